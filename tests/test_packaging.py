"""What a built wheel ships besides the code: the PEP 561 marker and the licence (issue 10)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _has_setuptools_77() -> bool:
    if importlib.util.find_spec("setuptools") is None:
        return False
    import setuptools

    return tuple(int(p) for p in setuptools.__version__.split(".")[:2]) >= (77, 0)


def test_the_wheel_ships_py_typed_and_the_license(tmp_path) -> None:
    # Built from a copy, so the shared checkout gets no build/ or *.egg-info from the test.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "gateway", src / "gateway", ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
               "-q", "-w", str(tmp_path / "out"), str(src)]
    if _has_setuptools_77():  # build offline with it; else pip fetches the build backend
        command.insert(4, "--no-build-isolation")
    subprocess.run(command, check=True, timeout=300)
    (wheel,) = (tmp_path / "out").glob("twilio_realtime_gateway-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "gateway/py.typed" in names
        # The hold audio a caller hears while the model is away ships as package data.
        assert {"gateway/audio/hold/message.ulaw", "gateway/audio/hold/tone.ulaw",
                "gateway/audio/hold/hold.json"} <= names
        # The console's pages, scripts and styles are served from the package.
        static = {Path(p).name for p in (ROOT / "gateway/web/console/static").iterdir()}
        assert {f"gateway/web/console/static/{name}" for name in static} <= names
        assert {"index.html", "login.html", "call.html", "console.css"} <= static
        (licence,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        text = archive.read(licence).decode()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = archive.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the twilio-realtime-gateway authors" in text
    assert "License-Expression: MIT" in headers and "License-File: LICENSE" in headers

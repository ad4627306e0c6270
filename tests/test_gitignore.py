"""The demo's output stays out of git (issue 10: .gitignore named a folder the demo never wrote)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_default_output_folder_is_ignored() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = build_parser().parse_args(["demo"]).out
    for artifact in ("call.wav", "timeline.png", "gateway.log"):
        checked = subprocess.run(["git", "check-ignore", "--no-index", "-q", f"{out}/{artifact}"], cwd=ROOT)
        assert checked.returncode == 0, f"{out}/{artifact} is not ignored by .gitignore"

"""The project stands alone: no file points outside the repository (issue 10, item 7).

A reference to a sibling folder (``..`` then ``shared``) or to a machine's absolute path (the
development machine's work or root home folders) means nothing to anyone who clones the
repository; so do notes that only existed beside it (the fact sheets named below). Cite a
public source instead: a documentation URL, or a module path inside a published package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Written so that this file does not match itself.
OUTSIDE = re.compile(
    r"\.\./shared/"  # a sibling folder of the checkout
    r"|(?<![\w.~-])/(?:wor[k]|roo[t])/"  # an absolute path on the development machine
    r"|\breference/(?:twilio|openai-realtime)\.m[d]\b"  # fact sheets kept outside the repository
)


def _project_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode()
    return sorted({name for name in listed.split("\0") if name})


def test_the_pattern_catches_what_it_is_for() -> None:
    for bad in ("see ../" + "shared/STYLE.md", "(/wor" + "k/shared/x.md)", "`/roo" + "t/.pyenv`",
                "reference/twilio" + ".md"):
        assert OUTSIDE.search(bad), bad
    for fine in ("https://example.com/wor" + "k/", "docs/events.md", "gateway/twilio/messages.py"):
        assert not OUTSIDE.search(fine), fine


def test_no_file_points_outside_the_repository() -> None:
    offending = []
    for name in _project_files():
        path = ROOT / name
        if not path.is_file():  # deleted in the working tree, not yet in the index
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        text = data.decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offending.append(f"{name}:{number}: {line.strip()}")
    assert not offending, "lines pointing outside the repository:\n" + "\n".join(offending)

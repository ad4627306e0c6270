"""The hold audio: shipped as whole frames, and made reproducibly (tools/make_hold_audio.py)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from gateway.audio import hold
from gateway.audio.measure import longest_quiet

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("make_hold_audio", ROOT / "tools" / "make_hold_audio.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hold_audio_is_whole_twilio_frames_of_the_stated_length() -> None:
    for name in ("message", "tone"):
        frames = hold.frames(name)
        assert frames and all(len(frame) == 160 for frame in frames)
        assert len(frames) * 20 == hold.manifest()[name]["ms"]
    assert hold.manifest()["message"]["text"] == "Please hold on a moment."
    assert 1000 <= hold.manifest()["message"]["ms"] <= 2000
    assert longest_quiet(b"".join(hold.frames("message"))) < 0.5  # speech, not silence
    with pytest.raises(KeyError):
        hold.frames("music")


def test_the_tone_is_remade_byte_for_byte_with_numpy_alone() -> None:
    assert _tool().tone_period() == b"".join(hold.frames("tone"))


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                    reason="espeak-ng and sox not installed (only needed to regenerate the message)")
def test_the_message_is_remade_byte_for_byte(tmp_path) -> None:
    _tool().generate(tmp_path)
    assert (tmp_path / "message.ulaw").read_bytes() == b"".join(hold.frames("message"))
    assert (tmp_path / "hold.json").read_text() == (ROOT / "gateway" / "audio" / "hold" / "hold.json").read_text()

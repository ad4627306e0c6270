#!/usr/bin/env python3
"""Generate the hold audio: ``gateway/audio/hold/message.ulaw``, ``tone.ulaw`` and ``hold.json``.

What a caller hears while the model is not there to speak (``gateway.audio.hold``). Development
time only: the files are committed, and nothing at run time needs the tools. To regenerate::

    python tools/make_hold_audio.py                  # writes gateway/audio/hold/
    python tools/make_hold_audio.py --out /tmp/hold  # somewhere else (to diff against the committed set)

- ``message.ulaw``: the hold message, spoken by espeak-ng and shaped by sox exactly as the demo's
  agent clips are (``tools/make_clips.py``: same voice, rate, band, level, padding; the same tool
  versions make it byte for byte).
- ``tone.ulaw``: one period of the soft tone that follows, computed here with numpy alone (so it
  is reproducible anywhere): a 425 Hz sine (the comfort-tone pitch of many networks, inside the
  telephone band) for 300 ms with 30 ms raised-cosine ends, at -24 dBFS, then silence to 2 s
  (so the caller never hears more than 1.7 s of quiet).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "gateway" / "audio" / "hold"

MESSAGE = "Please hold on a moment."
TONE_HZ = 425
TONE_S = 0.3
TONE_RAMP_S = 0.03
TONE_DBFS = -24
PERIOD_S = 2.0
RATE = 8000


def tone_period() -> bytes:
    """One period of the hold tone, G.711 mu-law at 8 kHz."""
    sys.path.insert(0, str(ROOT))
    from gateway.audio import pcm16_to_ulaw

    n = int(TONE_S * RATE)
    t = np.arange(n) / RATE
    wave = np.sin(2 * np.pi * TONE_HZ * t)
    ramp = int(TONE_RAMP_S * RATE)
    edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    wave[:ramp] *= edge
    wave[-ramp:] *= edge[::-1]
    amplitude = 32767 * 10 ** (TONE_DBFS / 20)
    pcm = np.round(wave * amplitude).astype("<i2")
    silence = np.zeros(int(PERIOD_S * RATE) - n, dtype="<i2")
    return pcm16_to_ulaw(np.concatenate([pcm, silence]).tobytes())


def _make_clips():
    spec = importlib.util.spec_from_file_location("make_clips", ROOT / "tools" / "make_clips.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate(out: Path) -> dict[str, dict[str, object]]:
    make_clips = _make_clips()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        message = make_clips.make_clip("agent", MESSAGE, Path(tmp))
    tone = tone_period()
    (out / "message.ulaw").write_bytes(message)
    (out / "tone.ulaw").write_bytes(tone)
    manifest = {
        "message": {"text": MESSAGE, "ms": len(message) // 8},
        "tone": {"text": f"{TONE_HZ} Hz for {TONE_S * 1000:.0f} ms at {TONE_DBFS} dBFS, every {PERIOD_S:g} s",
                 "ms": len(tone) // 8},
    }
    (out / "hold.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    args = parser.parse_args(argv)
    manifest = generate(args.out)
    for name, entry in manifest.items():
        print(f"{name:8} {int(entry['ms']) / 1000:5.2f} s  {entry['text']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

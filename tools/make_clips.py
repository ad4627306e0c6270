#!/usr/bin/env python3
"""Generate the offline demo's speech clips: ``gateway/demo/clips/NAME.ulaw`` + ``clips.json``.

Development-time only: the clips are committed, and the demo reads them with
``gateway.demo.clips`` (no espeak-ng or sox needed at run time). To regenerate::

    python tools/make_clips.py                  # writes gateway/demo/clips/
    python tools/make_clips.py --out /tmp/clips # somewhere else (e.g. to diff against the committed set)

Needs ``espeak-ng`` and ``sox`` on PATH (Debian: ``apt-get install espeak-ng sox``); only the
Python standard library otherwise. Output is byte-for-byte reproducible with the tool versions
the committed clips were made with (Debian 12 packages ``espeak-ng 1.51+dfsg-10+deb12u2`` and
``sox 14.4.2+git20190427-3.5``)::

    $ espeak-ng --version
    eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/x86_64-linux-gnu/espeak-ng-data
    $ sox --version
    sox:      SoX v14.4.2

Other versions work but may produce slightly different audio (the script warns).

Per clip:

1. ``espeak-ng -v VOICE -s WPM -w tmp.wav TEXT`` (22050 Hz, 16-bit). Agent: ``en-us+f1``
   (American English, female variant 1: no echo or breath effects, so it stays crisp through
   the telephone band) at 170 wpm. Caller: ``en+m3`` (British English, male variant 3) at
   160 wpm (about 50 s in all, under 400 KiB of 8 KB/s mu-law; 160/150 wpm came to 422 KiB).
   Note espeak-ng 1.51 silently ignores a ``+variant`` on ``en-gb``, so the British
   voice is named ``en`` (the same ``gmw/en`` voice that ``en-gb`` selects).
2. ``sox -R -D`` (repeatable, no dither), effects in this order:
   ``gain -n -3`` (so the trim threshold is relative to the clip's peak),
   ``silence 1 0.005 -45d reverse silence 1 0.005 -45d reverse`` (cut leading/trailing silence),
   ``pad 0.05 0.05`` (50 ms of silence each side), ``sinc 100-3600`` (telephone band, before
   the rate change), ``rate -v 8000``, ``gain -n -3`` (peak -3 dBFS), then written as raw
   G.711 mu-law, 8 kHz mono (``-t raw -e mu-law -r 8000 -c 1``).
3. The tail is padded with mu-law silence (0xFF) to a whole number of 20 ms frames (160
   bytes), the Twilio media frame, so every clip plays as whole frames and its duration in
   ``clips.json`` is a whole number of milliseconds (8 bytes a millisecond).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "gateway" / "demo" / "clips"

#: First line of ``espeak-ng --version`` / ``sox --version`` the committed clips were made with.
TOOL_VERSIONS = {
    "espeak-ng": "eSpeak NG text-to-speech: 1.51",
    "sox": "SoX v14.4.2",
}

#: speaker -> (espeak-ng voice, words per minute)
VOICES = {
    "agent": ("en-us+f1", 170),
    "caller": ("en+m3", 160),
}

#: name -> (speaker, text), in conversation order.
CLIPS: dict[str, tuple[str, str]] = {
    "agent_greeting": (
        "agent",
        "Thanks for calling Acme Outfitters. This is Ava. How can I help you today?",
    ),
    "caller_order_late": (
        "caller",
        "Hi. I ordered a tent last week, and it still hasn't arrived.",
    ),
    "agent_explains": (
        "agent",
        "I'm sorry your order hasn't arrived yet. Most orders arrive within five business days, "
        "but during busy weeks our carriers can take a little longer, and some rural addresses "
        "add a day or two. If you have your order number, I can look up exactly where your "
        "package is right now.",
    ),
    "caller_barge_in": (
        "caller",
        "Sorry to interrupt. I have the order number right here.",
    ),
    "agent_ask_digits": (
        "agent",
        "Of course. Please type your order number on your keypad, then press the pound key.",
    ),
    "agent_order_status": (
        "agent",
        "Thanks. Order four two seven one shipped yesterday, and it will arrive on Tuesday. "
        "Is there anything else I can help with?",
    ),
    "caller_thanks": (
        "caller",
        "No, that's all. Thank you!",
    ),
    "agent_goodbye": (
        "agent",
        "You're welcome. Thanks for calling Acme Outfitters. Goodbye!",
    ),
    "agent_sorry": (
        "agent",
        "Sorry, I didn't catch that. Could you say it again?",
    ),
}

PEAK_DBFS = -3
EDGE_SILENCE_S = 0.05
TRIM_THRESHOLD = "-45d"
BAND = "100-3600"
RATE = 8000
FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
ULAW_SILENCE = b"\xff"


def tool_version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True).stdout
    line = out.strip().splitlines()[0]
    # "sox:      SoX v14.4.2" -> "SoX v14.4.2"; espeak-ng: "... 1.51  Data at: ..." -> "... 1.51"
    return line.split(":", 1)[1].strip() if tool == "sox" else line.split("  Data at:")[0].strip()


def sox_effects() -> list[str]:
    return [
        "gain", "-n", str(PEAK_DBFS),
        "silence", "1", "0.005", TRIM_THRESHOLD,
        "reverse",
        "silence", "1", "0.005", TRIM_THRESHOLD,
        "reverse",
        "pad", str(EDGE_SILENCE_S), str(EDGE_SILENCE_S),
        "sinc", BAND,
        "rate", "-v", str(RATE),
        "gain", "-n", str(PEAK_DBFS),
    ]


def make_clip(speaker: str, text: str, workdir: Path) -> bytes:
    voice, wpm = VOICES[speaker]
    wav, raw = workdir / "speech.wav", workdir / "speech.ulaw"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(wav), text], check=True)
    subprocess.run(
        ["sox", "-R", "-D", str(wav),
         "-t", "raw", "-e", "mu-law", "-r", str(RATE), "-c", "1", str(raw),
         *sox_effects()],
        check=True,
    )
    ulaw = raw.read_bytes()
    return ulaw + ULAW_SILENCE * (-len(ulaw) % FRAME_BYTES)


def generate(out: Path) -> dict[str, dict[str, object]]:
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (speaker, text) in CLIPS.items():
            ulaw = make_clip(speaker, text, Path(tmp))
            (out / f"{name}.ulaw").write_bytes(ulaw)
            manifest[name] = {"speaker": speaker, "text": text, "ms": len(ulaw) // 8}
    (out / "clips.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    args = parser.parse_args(argv)
    for tool, expected in TOOL_VERSIONS.items():
        if shutil.which(tool) is None:
            print(f"error: {tool} not found on PATH", file=sys.stderr)
            return 1
        found = tool_version(tool)
        if found != expected:
            print(f"warning: {tool} is {found!r}, clips were made with {expected!r}; "
                  "the audio may differ slightly", file=sys.stderr)
    manifest = generate(args.out)
    total = sum(int(entry["ms"]) for entry in manifest.values())
    for name, entry in manifest.items():
        print(f"{name:20} {entry['speaker']:6} {int(entry['ms']) / 1000:6.2f} s")
    print(f"{len(manifest)} clips, {total / 1000:.2f} s, {total * 8 / 1024:.0f} KiB -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

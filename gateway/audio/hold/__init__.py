"""The hold audio: what a caller hears while the model is not there to speak.

``message`` ("Please hold on a moment.", in the demo agent's voice) and one period of a soft
``tone`` (425 Hz for 300 ms every 2 s, at -24 dBFS), both 8 kHz G.711 mu-law in whole 20 ms
frames, shipped in this package (``message.ulaw``, ``tone.ulaw``, ``hold.json``) and made
reproducibly by ``tools/make_hold_audio.py``. ``gateway.bridge.hold`` plays them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from gateway.audio.framing import FRAME_BYTES

__all__ = ["frames", "manifest"]


@cache
def manifest() -> dict[str, dict[str, object]]:
    return json.loads(resources.files(__package__).joinpath("hold.json").read_text(encoding="utf-8"))


@cache
def frames(name: str) -> tuple[bytes, ...]:
    """``"message"`` or ``"tone"`` as Twilio media frames (160 bytes, 20 ms each)."""
    if name not in manifest():
        raise KeyError(f"no hold audio named {name!r}")
    data = resources.files(__package__).joinpath(f"{name}.ulaw").read_bytes()
    return tuple(data[i:i + FRAME_BYTES] for i in range(0, len(data), FRAME_BYTES))

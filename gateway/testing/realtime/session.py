"""The Realtime session configuration: GA defaults, ``session.update`` merging, audio formats.

The server keeps each connection's session as the JSON object it reports in
``session.created`` / ``session.updated`` (GA shape: ``type: "realtime"``, ``audio.input`` and
``audio.output`` with object formats). Facts relied on:

- ``session.update`` is partial: only the keys sent change. The SDK sends a tracing-only update
  (``{"type": "realtime", "model": ..., "tracing": "auto"}``) after ``session.created``; the reply
  must still carry ``audio`` or the SDK forgets ``turn_detection.interrupt_response`` and starts
  sending ``response.cancel`` on every barge-in (see /tmp/notes/sdk.md section 1).
- A nested object whose ``type`` changes is replaced, not merged: switching
  ``{"type": "audio/pcm", "rate": 24000}`` to ``{"type": "audio/pcmu"}`` must not keep the rate,
  and ``server_vad`` settings do not carry over to ``semantic_vad``.
- ``turn_detection: null`` turns voice-activity detection off.
- Formats are ``{"type": "audio/pcm", "rate": 24000}`` (PCM16 24 kHz) and ``{"type":
  "audio/pcmu"}`` (G.711 mu-law 8 kHz). ``audio/pcma`` is valid on the wire but this server does
  not speak it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.audio import Resampler, pcm16_to_ulaw, ulaw_to_pcm16
from gateway.testing.realtime.script import MODEL_RATE

__all__ = [
    "PCM16",
    "PCMU",
    "AudioFormat",
    "TurnDetection",
    "audio_config",
    "default_session",
    "merge_session",
]

#: Defaults the server fills into a turn_detection object of each type (the real API's
#: documented defaults, except that silence_duration_ms comes from the server's settings).
_SERVER_VAD_DEFAULTS: dict[str, Any] = {
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
_SEMANTIC_VAD_DEFAULTS: dict[str, Any] = {
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}


@dataclass(frozen=True)
class AudioFormat:
    """One of the two audio formats the server speaks."""

    type: str  # "audio/pcm" or "audio/pcmu"
    rate: int

    @property
    def bytes_per_ms(self) -> int:
        return 48 if self.type == "audio/pcm" else 8

    @property
    def wire(self) -> dict[str, Any]:
        """The format object as the GA protocol spells it."""
        return {"type": "audio/pcm", "rate": 24000} if self.type == "audio/pcm" else {"type": self.type}

    def to_pcm16(self, data: bytes) -> bytes:
        """Wire bytes -> PCM16 at ``self.rate``."""
        return data if self.type == "audio/pcm" else ulaw_to_pcm16(data)

    def from_model_pcm16(self, pcm16_24k: bytes) -> bytes:
        """A whole utterance of PCM16 24 kHz (model audio) -> wire bytes."""
        if self.type == "audio/pcm":
            return pcm16_24k
        resampler = Resampler(MODEL_RATE, 8000)
        return pcm16_to_ulaw(resampler.process(pcm16_24k) + resampler.flush())

    @classmethod
    def from_wire(cls, fmt: Mapping[str, Any] | None) -> AudioFormat:
        kind = (fmt or {}).get("type", "audio/pcm")
        if kind == "audio/pcm":
            return PCM16
        if kind == "audio/pcmu":
            return PCMU
        raise ValueError(f"audio format {kind!r} is not supported by this server "
                         "(use audio/pcm at 24000 Hz or audio/pcmu)")


PCM16 = AudioFormat("audio/pcm", 24000)
PCMU = AudioFormat("audio/pcmu", 8000)


@dataclass(frozen=True)
class TurnDetection:
    """What the server's voice-activity detection does, read from the session."""

    type: str
    create_response: bool
    interrupt_response: bool
    silence_duration_ms: int
    prefix_padding_ms: int

    @classmethod
    def from_session(cls, session: Mapping[str, Any], default_silence_ms: int) -> TurnDetection | None:
        td = audio_config(session, "input").get("turn_detection")
        if td is None:
            return None
        silence = td.get("silence_duration_ms")
        padding = td.get("prefix_padding_ms")
        return cls(
            type=td.get("type", "server_vad"),
            create_response=td.get("create_response") is not False,
            interrupt_response=td.get("interrupt_response") is not False,
            silence_duration_ms=default_silence_ms if silence is None else int(silence),
            prefix_padding_ms=300 if padding is None else int(padding),
        )


def audio_config(session: Mapping[str, Any], direction: str) -> Mapping[str, Any]:
    """``session.audio.input`` or ``.output``; empty if absent (every key is optional)."""
    return (session.get("audio") or {}).get(direction) or {}


def default_session(session_id: str, *, silence_duration_ms: int = 500) -> dict[str, Any]:
    """The session a new connection starts with (what ``session.created`` carries)."""
    return {
        "type": "realtime",
        "id": session_id,
        "object": "realtime.session",
        "model": "gpt-realtime",
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "audio": {
            "input": {
                "format": PCM16.wire,
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    **_SERVER_VAD_DEFAULTS,
                    "silence_duration_ms": silence_duration_ms,
                },
            },
            "output": {"format": PCM16.wire, "voice": "marin", "speed": 1.0},
        },
    }


def _merge(base: Any, patch: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if "type" in patch and patch["type"] != base.get("type"):
        return copy.deepcopy(patch)  # a different kind of object: replace it
    merged = dict(base)
    for key, value in patch.items():
        merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
    return merged


def merge_session(current: Mapping[str, Any], update: Mapping[str, Any], *,
                  silence_duration_ms: int = 500) -> dict[str, Any]:
    """``current`` with a ``session.update``'s ``session`` merged in, turn-detection defaults
    filled. The session id and object are the server's, whatever the update says."""
    merged = _merge(dict(current), dict(update))
    merged["id"], merged["object"] = current["id"], current["object"]
    td = audio_config(merged, "input").get("turn_detection")
    if isinstance(td, dict):
        defaults = {
            "server_vad": {**_SERVER_VAD_DEFAULTS, "silence_duration_ms": silence_duration_ms},
            "semantic_vad": _SEMANTIC_VAD_DEFAULTS,
        }.get(td.get("type"), {})
        merged["audio"]["input"]["turn_detection"] = {**defaults, **td}
    return merged

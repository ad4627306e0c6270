"""Per-call, per-direction transcoders: what the bridge uses to move audio between Twilio
(mu-law 8 kHz) and the model (PCM16 24 kHz, or mu-law 8 kHz passed straight through).

Each object is sans-I/O and stateful (resampler history), one per direction per call.
"""

from __future__ import annotations

from gateway.audio.formats import AudioMode
from gateway.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from gateway.audio.resample import TELEPHONE_RATE, Resampler


class InboundTranscoder:
    """Caller -> model: Twilio mu-law frames to the model's input format."""

    __slots__ = ("mode", "_resampler")

    def __init__(self, mode: AudioMode) -> None:
        self.mode = mode
        self._resampler = (
            Resampler(TELEPHONE_RATE, mode.model_rate) if mode is AudioMode.PCM16 else None
        )

    def convert(self, ulaw: bytes) -> bytes:
        """One Twilio payload in, the model's audio for it out (1.875 ms behind in PCM16)."""
        if self._resampler is None:
            return ulaw
        return self._resampler.process(ulaw_to_pcm16(ulaw))

    def flush(self) -> bytes:
        """The held-back tail, when the caller's audio ends (the stream stops)."""
        return self._resampler.flush() if self._resampler is not None else b""

    def reset(self) -> None:
        if self._resampler is not None:
            self._resampler.reset()


class OutboundTranscoder:
    """Model -> caller: the model's output audio to mu-law 8 kHz for Twilio."""

    __slots__ = ("mode", "_resampler")

    def __init__(self, mode: AudioMode) -> None:
        self.mode = mode
        self._resampler = (
            Resampler(mode.model_rate, TELEPHONE_RATE) if mode is AudioMode.PCM16 else None
        )

    def convert(self, model_audio: bytes) -> bytes:
        """A chunk of model audio (any size) in, the mu-law ready so far out."""
        if self._resampler is None:
            return model_audio
        return pcm16_to_ulaw(self._resampler.process(model_audio))

    def flush(self) -> bytes:
        """End of one response's audio: the held-back tail, so the caller hears all of it."""
        if self._resampler is None:
            return b""
        return pcm16_to_ulaw(self._resampler.flush())

    def reset(self) -> None:
        """Barge-in: drop the held-back tail of audio that will never be played."""
        if self._resampler is not None:
            self._resampler.reset()

"""The audio modes the gateway speaks to a realtime model, and their byte rates.

Twilio Media Streams always carries mu-law 8 kHz mono (``audio/x-mulaw``; the ``start``
message's ``mediaFormat``, https://www.twilio.com/docs/voice/media-streams/websocket-messages).
OpenAI's realtime models take and produce either PCM16 24 kHz mono (``audio/pcm``, the SDK's
``"pcm16"``) or G.711 mu-law 8 kHz (``audio/pcmu``, the SDK's ``"g711_ulaw"``); see
https://platform.openai.com/docs/guides/realtime and ``agents/realtime/audio_formats.py`` in
openai-agents (``to_realtime_audio_format``).
"""

from __future__ import annotations

import enum


class AudioMode(str, enum.Enum):
    """How the gateway carries audio to and from the model (setting ``GATEWAY_AUDIO_MODE``)."""

    #: Transcode: mu-law 8 kHz <-> PCM16 24 kHz. The model hears and speaks wideband PCM.
    PCM16 = "pcm16"
    #: Pass-through: the model takes and produces mu-law 8 kHz; no codec, no resampling.
    G711_ULAW = "g711_ulaw"

    @property
    def model_rate(self) -> int:
        return 24000 if self is AudioMode.PCM16 else 8000

    @property
    def model_bytes_per_ms(self) -> int:
        """Bytes of model-side audio per millisecond: 48 for PCM16 24 kHz, 8 for mu-law."""
        return 48 if self is AudioMode.PCM16 else 8

    def __str__(self) -> str:
        return self.value

"""Audio: G.711 mu-law codec, streaming resamplers, per-direction transcoders, framing."""

from gateway.audio.formats import AudioMode
from gateway.audio.framing import FRAME_BYTES, FRAME_MS, Framer
from gateway.audio.g711 import ULAW_BYTES_PER_MS, ULAW_SILENCE, pcm16_to_ulaw, ulaw_to_pcm16
from gateway.audio.resample import Resampler
from gateway.audio.transcode import InboundTranscoder, OutboundTranscoder

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "ULAW_BYTES_PER_MS",
    "ULAW_SILENCE",
    "AudioMode",
    "Framer",
    "InboundTranscoder",
    "OutboundTranscoder",
    "Resampler",
    "pcm16_to_ulaw",
    "ulaw_to_pcm16",
]

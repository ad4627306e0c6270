"""G.711 mu-law <-> PCM16 (little-endian), through ``audioop``.

One import path for every supported Python: the stdlib module on 3.11/3.12 (deprecated by
PEP 594, hence the silenced warning) and the ``audioop-lts`` package on 3.13+, which installs
under the same name. Both are C implementations of the same ITU-T G.711 tables.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

#: mu-law byte for a zero sample (0xFF is +0; Twilio and G.711 silence use it).
ULAW_SILENCE = 0xFF
#: 8 kHz, one byte a sample: 8 bytes a millisecond.
ULAW_BYTES_PER_MS = 8


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    """Decode mu-law bytes to PCM16 little-endian (two bytes a sample)."""
    return audioop.ulaw2lin(ulaw, 2)


def pcm16_to_ulaw(pcm16: bytes) -> bytes:
    """Encode PCM16 little-endian to mu-law. ``pcm16`` must hold whole samples."""
    return audioop.lin2ulaw(pcm16, 2)

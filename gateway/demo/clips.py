"""The demo's recorded speech: short G.711 mu-law clips of the agent and the caller.

The clips live in this package (``clips/NAME.ulaw``, raw 8 kHz mono mu-law, plus
``clips/clips.json`` giving each one's speaker, text and duration) and are read through
``importlib.resources``, so they load the same from a source tree, an editable install or a
wheel. They were synthesised once with espeak-ng and sox by ``tools/make_clips.py`` (which
documents voices, settings and tool versions); nothing here needs those tools.

Every clip is a whole number of 20 ms Twilio frames, peaks at about -3 dBFS, is band-limited
to 100-3600 Hz and has about 50 ms of silence at each end.

    >>> from gateway.demo import clips
    >>> clip = clips.load("agent_greeting")
    >>> clip.speaker, clip.ms, len(clip.pcm16(24000)) == 6 * len(clip.ulaw)
    ('agent', 4920.0, True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from gateway.audio import ULAW_BYTES_PER_MS, Resampler, ulaw_to_pcm16

Speaker = Literal["agent", "caller"]

TELEPHONE_RATE = 8000
#: Rates ``Clip.pcm16`` produces: the telephone rate and the Realtime API's PCM16 rate.
PCM_RATES = (8000, 24000)

_PACKAGE = __package__ or "gateway.demo"
_DIR = "clips"
_MANIFEST = "clips.json"


@dataclass(frozen=True)
class Clip:
    """One recorded utterance: raw 8 kHz mono G.711 mu-law, one byte a sample."""

    name: str
    speaker: Speaker
    text: str
    ulaw: bytes

    @property
    def ms(self) -> float:
        """Duration in milliseconds, from the byte count (8 bytes a millisecond)."""
        return len(self.ulaw) / ULAW_BYTES_PER_MS

    def pcm16(self, rate: int = TELEPHONE_RATE) -> bytes:
        """The clip as little-endian PCM16 mono at ``rate`` Hz (8000 or 24000).

        8000 is a plain G.711 decode. 24000 upsamples it with the gateway's own streaming
        ``Resampler``, flushed at the end, so the result is exactly 3 samples per input
        sample and time-aligned with it (sample ``3 * i`` is at input sample ``i``'s time).
        """
        pcm = ulaw_to_pcm16(self.ulaw)
        if rate == TELEPHONE_RATE:
            return pcm
        if rate == 24000:
            resampler = Resampler(TELEPHONE_RATE, rate)
            return resampler.process(pcm) + resampler.flush()
        raise ValueError(f"unsupported rate {rate} Hz for clip {self.name!r}; supported: {PCM_RATES}")


def _files():
    return resources.files(_PACKAGE).joinpath(_DIR)


@cache
def _manifest() -> dict[str, dict[str, object]]:
    return json.loads(_files().joinpath(_MANIFEST).read_text(encoding="utf-8"))


def names() -> list[str]:
    """Every clip's name, in conversation order (the manifest's order)."""
    return list(_manifest())


@cache
def load(name: str) -> Clip:
    """The clip called ``name`` (cached). ``KeyError`` names the known clips if there is none."""
    entry = _manifest().get(name)
    if entry is None:
        raise KeyError(f"no demo clip {name!r}; known clips: {', '.join(names())}")
    return Clip(
        name=name,
        speaker=entry["speaker"],  # type: ignore[arg-type]
        text=str(entry["text"]),
        ulaw=_files().joinpath(f"{name}.ulaw").read_bytes(),
    )


def all_clips() -> dict[str, Clip]:
    """Every clip by name, in conversation order (a new dict of the cached clips)."""
    return {name: load(name) for name in names()}

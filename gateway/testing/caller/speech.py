"""``Speech``: what the caller says, cut into Twilio's inbound frames. Sans-I/O.

Twilio sends a 20 ms (160-byte) mu-law frame every 20 ms for as long as the stream lasts,
silence (0xFF) included when the caller says nothing. Frame ``k`` holds the audio of
``[k * 20, (k + 1) * 20)`` ms after stream start. Utterances are laid back to back, each
starting no earlier than the moment it was queued (what is said now cannot be in the past)
and possibly mid-frame; their ``start``/``end`` are stamped with the sample they fall on.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from gateway.audio import FRAME_BYTES, ULAW_SILENCE
from gateway.testing.caller.playout import SAMPLE_RATE
from gateway.testing.caller.records import Utterance

__all__ = ["Speech"]

_SILENT_FRAME = bytes([ULAW_SILENCE]) * FRAME_BYTES


@dataclass(slots=True)
class _Saying:
    utterance: Utterance
    sent: int = 0  # bytes of it already in frames


class Speech:
    """The queue of utterances not yet (fully) sent."""

    def __init__(self) -> None:
        self._queue: deque[_Saying] = deque()

    def __bool__(self) -> bool:
        """Something is still to be said."""
        return bool(self._queue)

    def say(self, utterance: Utterance) -> None:
        self._queue.append(_Saying(utterance))

    def frame(self, k: int) -> tuple[bytes, bool]:
        """Frame ``k`` (160 bytes), and whether an utterance ended in it."""
        if not self._queue:
            return _SILENT_FRAME, False
        frame = bytearray()
        first_sample = k * FRAME_BYTES
        ended = False
        while self._queue and len(frame) < FRAME_BYTES:
            saying = self._queue[0]
            utterance = saying.utterance
            if utterance.start is None:
                earliest = math.ceil(utterance.queued_at * SAMPLE_RATE - 1e-6) - first_sample
                if earliest >= FRAME_BYTES:
                    break  # queued for later than this frame
                frame += _SILENT_FRAME[: max(0, earliest - len(frame))]
                utterance.start = (first_sample + len(frame)) / SAMPLE_RATE
            take = utterance.audio[saying.sent : saying.sent + FRAME_BYTES - len(frame)]
            frame += take
            saying.sent += len(take)
            if saying.sent >= len(utterance.audio):
                utterance.end = (first_sample + len(frame)) / SAMPLE_RATE
                self._queue.popleft()
                ended = True
        frame += _SILENT_FRAME[len(frame) :]
        return bytes(frame), ended

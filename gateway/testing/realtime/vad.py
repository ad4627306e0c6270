"""``EnergyVad``: a deterministic voice-activity detector timed by the audio itself.

Sans-I/O: feed it PCM16 as it arrives; it returns the speech starts and stops found. Time is
the audio clock: milliseconds of input audio since the first byte of the connection (sample
counts, never the wall clock), which is also how the real API stamps ``audio_start_ms`` /
``audio_end_ms``. So a test that sends "600 ms of silence, 400 ms of tone, 800 ms of silence"
gets the same events, at the same audio times, however fast it sends them.

Audio is judged in 10 ms frames. A frame is speech when its RMS level is at or above
``threshold_dbfs``. Speech starts after ``min_speech_ms`` of consecutive speech frames and is
reported from its first frame less ``prefix_padding_ms`` (the real API's
``audio_start_ms`` includes the padding), never earlier than the end of the previous turn.
It stops after ``silence_duration_ms`` of consecutive non-speech frames, reported at the end of
that silence (the real API's ``audio_end_ms`` includes it too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["EnergyVad", "SpeechStart", "SpeechStop", "FRAME_MS"]

FRAME_MS = 10


@dataclass(frozen=True)
class SpeechStart:
    audio_start_ms: int
    """Start of the speech less the prefix padding (what ``speech_started`` reports)."""
    detected_ms: int
    """Audio time at which the detector became sure (after ``min_speech_ms``)."""


@dataclass(frozen=True)
class SpeechStop:
    audio_end_ms: int
    """End of the silence that ended the speech (what ``speech_stopped`` reports)."""


class EnergyVad:
    def __init__(self, *, threshold_dbfs: float = -45.0, min_speech_ms: int = 60) -> None:
        if min_speech_ms < FRAME_MS:
            raise ValueError(f"min_speech_ms must be at least {FRAME_MS}")
        self.threshold_dbfs = threshold_dbfs
        self.min_speech_ms = min_speech_ms
        self._rate = 0
        self._carry = b""
        self._frames = 0  # whole frames seen: the clock, in FRAME_MS units
        self._extra_ms = 0.0  # audio dropped at a rate change (partial frames)
        self._run_start: int | None = None  # first frame of the current run of speech frames
        self._speaking = False
        self._silence_frames = 0
        self._floor_ms = 0  # end of the last turn: a new start is never reported before it

    @property
    def position_ms(self) -> int:
        """The audio clock: whole frames of input seen, in ms."""
        return int(self._frames * FRAME_MS + self._extra_ms)

    @property
    def speaking(self) -> bool:
        return self._speaking

    def level_dbfs(self, frame: np.ndarray) -> float:
        rms = math.sqrt(float(np.mean(frame * frame))) if frame.size else 0.0
        return 20 * math.log10(rms / 32768.0) if rms > 0 else -math.inf

    def reset(self) -> None:
        """Forget any speech in progress (the buffer was committed or cleared); the clock runs on."""
        self._run_start = None
        self._speaking = False
        self._silence_frames = 0
        self._floor_ms = self.position_ms

    def feed(self, pcm16: bytes, rate: int, *, silence_duration_ms: int | None,
             prefix_padding_ms: int = 0) -> list[SpeechStart | SpeechStop]:
        """Take input audio (PCM16 at ``rate``); return the speech events it completes.

        ``silence_duration_ms=None`` means detection is off: the clock still advances.
        """
        if rate != self._rate:
            if self._rate and self._carry:
                self._extra_ms += len(self._carry) / 2 / self._rate * 1000
            self._rate, self._carry = rate, b""
        data = self._carry + pcm16
        frame_bytes = 2 * rate * FRAME_MS // 1000
        whole = len(data) - len(data) % frame_bytes
        self._carry = data[whole:]
        if not whole:
            return []
        frames = np.frombuffer(data[:whole], dtype="<i2").astype(np.float64).reshape(-1, frame_bytes // 2)
        events: list[SpeechStart | SpeechStop] = []
        for frame in frames:
            index = self._frames
            self._frames += 1
            if silence_duration_ms is None:
                if self._speaking or self._run_start is not None:
                    self.reset()
                continue
            events.extend(self._step(index, self.level_dbfs(frame) >= self.threshold_dbfs,
                                     silence_duration_ms, prefix_padding_ms))
        return events

    def _step(self, index: int, voiced: bool, silence_ms: int, padding_ms: int) -> list[SpeechStart | SpeechStop]:
        end_ms = self.position_ms  # end of this frame
        if not self._speaking:
            if not voiced:
                self._run_start = None
                return []
            if self._run_start is None:
                self._run_start = end_ms - FRAME_MS
            if end_ms - self._run_start < self.min_speech_ms:
                return []
            self._speaking, self._silence_frames = True, 0
            start = max(self._run_start - padding_ms, self._floor_ms)
            return [SpeechStart(audio_start_ms=start, detected_ms=end_ms)]
        if voiced:
            self._silence_frames = 0
            return []
        self._silence_frames += 1
        if self._silence_frames * FRAME_MS < silence_ms:
            return []
        self.reset()
        return [SpeechStop(audio_end_ms=end_ms)]

"""``WavSpool``: a call's recording file, written in pieces from threads. Blocking I/O.

The file is the WAV itself, under a ``.part`` name of its own while the call goes on: each
``Chunk`` is decoded (mu-law to PCM16), interleaved (caller left, agent right) and written at
its place, after a 44-byte header left blank. ``close`` writes the header, now that the length
is known, and renames the file to its final name, so a ``.wav`` is always complete. A call can
have more than one stream (TwiML that ``<Connect>``s again after a ``<Redirect>``): a name
already taken gets ``-2``, ``-3``, ... rather than replace the earlier stream's recording.

Pieces carry their offset, so they may be written in any order and from any thread (a lock
keeps one file position at a time). A failure to write is logged once, with the call it
belongs to, and makes the spool give up: the partial file is removed, the call goes on.

The format: RIFF/WAVE, PCM (format 1), 2 channels, 8000 Hz, 16 bits, little-endian
(http://soundfile.sapp.org/doc/WaveFormat/); what the stdlib ``wave`` module reads.
"""

from __future__ import annotations

import logging
import os
import secrets
import struct
import threading
from pathlib import Path
from typing import BinaryIO

import numpy as np

from gateway.audio import ulaw_to_pcm16
from gateway.recording.recorder import RATE, Chunk

HEADER_BYTES = 44
CHANNELS = 2
SAMPLE_BYTES = 2
FRAME_BYTES = CHANNELS * SAMPLE_BYTES  # one sample of each channel
#: The RIFF size fields are 32 bits: a WAV holds at most this many frames (about 37 hours).
MAX_FRAMES = (0xFFFFFFFF - (HEADER_BYTES - 8)) // FRAME_BYTES


def wav_header(frames: int) -> bytes:
    """The 44-byte header of a stereo 16-bit 8 kHz PCM WAV holding ``frames`` frames."""
    size = frames * FRAME_BYTES
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", HEADER_BYTES - 8 + size, b"WAVE",
        b"fmt ", 16, 1, CHANNELS, RATE, RATE * FRAME_BYTES, FRAME_BYTES, 8 * SAMPLE_BYTES,
        b"data", size,
    )


def stereo_pcm16(caller: bytes | bytearray, agent: bytes | bytearray) -> bytes:
    """Mu-law channels of one length as interleaved PCM16 frames: caller left, agent right."""
    out = np.empty(2 * len(caller), "<i2")
    out[0::2] = np.frombuffer(ulaw_to_pcm16(bytes(caller)), "<i2")
    out[1::2] = np.frombuffer(ulaw_to_pcm16(bytes(agent)), "<i2")
    return out.tobytes()


class WavSpool:
    def __init__(self, path: Path, log: logging.Logger | logging.LoggerAdapter) -> None:
        self.path = path
        self.part = path.with_name(f"{path.stem}.{secrets.token_hex(4)}{path.suffix}.part")
        self.log = log
        self.failed = False
        self.frames = 0  # the end of the audio written so far
        self._file: BinaryIO | None = None
        self._lock = threading.Lock()

    def write(self, chunk: Chunk) -> None:
        """Write ``chunk`` at its place (blocking: run it in a thread). Never raises: a failure
        is logged and ends the recording."""
        with self._lock:
            if self.failed:
                return
            end = chunk.offset + chunk.samples
            try:
                data = stereo_pcm16(chunk.caller, chunk.agent)
                if end > MAX_FRAMES:
                    if chunk.offset < MAX_FRAMES:  # said once, as the limit is crossed
                        self.log.warning("recording %s: longer than a WAV can hold; the rest is not kept",
                                         self.path)
                    data = data[: max(0, MAX_FRAMES - chunk.offset) * FRAME_BYTES]
                    end = MAX_FRAMES
                file = self._open()
                file.seek(HEADER_BYTES + chunk.offset * FRAME_BYTES)
                file.write(data)
            except Exception as exc:  # the disk (OSError), or our bug: either way a hole
                self._fail("could not be written", exc)
                return
            self.frames = max(self.frames, end)

    def close(self) -> Path | None:
        """The header, then the final name (blocking): the file's path, or None if the
        recording failed."""
        with self._lock:
            if self.failed:
                return None
            try:
                file = self._open()
                file.seek(0)
                file.write(wav_header(self.frames))
                file.truncate(HEADER_BYTES + self.frames * FRAME_BYTES)
                file.close()
                self._file = None
                path, n = self.path, 1
                while path.exists():  # another stream of the same call
                    n += 1
                    path = self.path.with_name(f"{self.path.stem}-{n}{self.path.suffix}")
                os.replace(self.part, path)
            except Exception as exc:
                self._fail("could not be finished", exc)
                return None
        return path

    def discard(self) -> None:
        """Give the recording up: the partial file is removed (blocking)."""
        with self._lock:
            self.failed = True
            self._remove()

    def _open(self) -> BinaryIO:
        if self._file is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.part, "w+b")
            except FileNotFoundError:  # the day's folder was removed (retention) just then: again
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.part, "w+b")
            self._file.write(wav_header(0))
        return self._file

    def _fail(self, what: str, exc: Exception) -> None:
        self.failed = True
        self.log.error("recording %s %s (%s: %s); nothing is kept of it",
                       self.path, what, type(exc).__name__, exc,
                       exc_info=None if isinstance(exc, OSError) else exc)
        self._remove()

    def _remove(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # closing a file that failed to write: nothing more to lose
            self._file = None
        try:
            self.part.unlink(missing_ok=True)
        except OSError as exc:
            self.log.warning("partial recording %s could not be removed: %s", self.part, exc)

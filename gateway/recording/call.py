"""``CallRecording``: one call's recording, the asyncio edge around the ``Recorder``.

The call's runner (``gateway.bridge.runner``) feeds it on the event loop, frame by frame: the
caller's frames (``caller``, through ``Call.on_caller_audio``), what goes to Twilio (``sent``),
whether keys are being collected (``collecting``). Every ``FLUSH_EVERY_S`` it takes the audio
that has become final and hands it to a thread (the loop's default executor), which writes it
into the WAV under its ``.part`` name (``WavSpool``): no file I/O on the loop, and memory per
call bounded by a few seconds of audio. ``await finish(now)`` writes the rest, completes the
file in a thread and returns its path relative to the data directory, for
``CallRecord.recording``.

Where: ``data_dir/recordings/YYYY/MM/DD/<CallSid>.wav``, by the UTC date the call started
(``<CallSid>-2.wav`` for a second stream of the same call).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
from pathlib import Path, PurePosixPath

from gateway.bridge.actions import Action
from gateway.recording.recorder import Chunk, Recorder
from gateway.recording.spool import WavSpool

#: How often the final audio goes to the file (seconds of call time).
FLUSH_EVERY_S = 5.0

_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def recording_path(call_sid: str, started_at: float) -> PurePosixPath:
    """Where a call's recording goes under the data directory: ``recordings/YYYY/MM/DD/<CallSid>.wav``
    (``started_at``: Unix time; the UTC date). A SID is letters and digits (``CA`` + 32 hex);
    anything else in it is replaced, so it can only name a file in that folder."""
    day = datetime.datetime.fromtimestamp(started_at, datetime.timezone.utc)
    name = _SAFE.sub("_", call_sid)[:64] or "call"
    return PurePosixPath("recordings", f"{day:%Y}", f"{day:%m}", f"{day:%d}", f"{name}.wav")


def stored_recording(data_dir: Path | str, relative: object) -> Path | None:
    """Where a stored call's ``recording`` (relative to the data directory) is, or None if the
    name is no WAV inside ``data_dir``. The name comes from the store, which another process
    or a person with the database may have written: an absolute path, a ``..`` or a symbolic
    link leading out is refused, not followed. The file may be gone (retention). Blocks (it
    resolves links): call it from a thread."""
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        return None
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts or candidate.suffix.lower() != ".wav":
        return None
    root = Path(data_dir).resolve()
    path = (root / candidate).resolve()
    return path if path.is_relative_to(root) else None


class CallRecording:
    def __init__(self, data_dir: Path, call_sid: str, started_at: float, now: float,
                 log: logging.Logger | logging.LoggerAdapter, *, flush_every_s: float = FLUSH_EVERY_S) -> None:
        """``started_at``: Unix time the call started (its folder's date); ``now``: the call's
        clock at the stream's ``start`` (sample 0)."""
        self.recorder = Recorder(now)
        self.relative = recording_path(call_sid, started_at)
        self.spool = WavSpool(Path(data_dir) / self.relative, log)
        self.log = log
        self.flush_every_s = flush_every_s
        self._next_flush = now + flush_every_s
        self._writes: set[asyncio.Future[None]] = set()
        #: The recorder failed (our bug, logged): nothing more is recorded, nothing is kept.
        self.broken = False

    @property
    def paused(self) -> bool:
        return self.recorder.paused

    # --- On the event loop, per frame ----------------------------------------------------------

    # A bug here must not cost the call more than its recording: each entry point gives the
    # recording up (logged) rather than raise into the call's tasks.

    def caller(self, timestamp_ms: int, payload: bytes, now: float) -> None:
        """A caller frame (``Call.on_caller_audio``); now and then, the final audio goes out."""
        if self.broken:
            return
        try:
            self.recorder.caller(timestamp_ms, payload, now)
            if now >= self._next_flush:
                self._next_flush = now + self.flush_every_s
                self._write(self.recorder.take(now))
        except Exception:
            self._break()

    def sent(self, action: Action, now: float) -> None:
        """An action about to go to Twilio (media, mark or clear)."""
        if self.broken:
            return
        try:
            self.recorder.sent(action, now)
        except Exception:
            self._break()

    def collecting(self, collecting: bool, now: float) -> None:
        """Keys are being collected (``Call.collecting``): the recording pauses."""
        if self.broken:
            return
        try:
            self.recorder.collecting(collecting, now)
        except Exception:
            self._break()

    def _break(self) -> None:
        self.broken = True
        self.log.exception("recording %s given up: the recorder failed", self.spool.path)

    # --- The end ---------------------------------------------------------------------------------

    async def finish(self, now: float) -> str | None:
        """The call ended at ``now``: write the rest and complete the file, in threads. Its path
        under the data directory, or None if it could not be written (logged). A cancel while
        this runs does not stop the file being completed."""
        try:
            return await asyncio.shield(self._finish(now))
        except asyncio.CancelledError:
            raise
        except Exception:  # our bug: the call is over, its record must still go on
            self.log.exception("recording %s could not be finished", self.spool.path)
            return None

    async def _finish(self, now: float) -> str | None:
        if not self.broken:
            self._write(self.recorder.finish(now))
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)  # each logs its own failure
        loop = asyncio.get_running_loop()
        if self.broken:
            await loop.run_in_executor(None, self.spool.discard)
            return None
        written = await loop.run_in_executor(None, self.spool.close)
        if written is None:
            return None
        relative = self.relative.with_name(written.name)
        self.log.info("recording written: %s (%.1f s)", relative, self.spool.frames / 8000)
        return str(relative)

    def _write(self, chunk: Chunk | None) -> None:
        if chunk is None:
            return
        write = asyncio.get_running_loop().run_in_executor(None, self.spool.write, chunk)
        self._writes.add(write)
        write.add_done_callback(self._written)

    def _written(self, write: asyncio.Future[None]) -> None:
        self._writes.discard(write)
        if not write.cancelled() and write.exception() is not None:  # WavSpool.write catches its own
            self.log.error("recording %s: writing failed", self.spool.path, exc_info=write.exception())

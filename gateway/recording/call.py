"""``CallRecording``: one call's recording, the asyncio edge around the ``Recorder``.

The call's runner (``gateway.bridge.runner``) feeds it on the event loop, frame by frame: the
caller's frames (``caller``, through ``Call.on_caller_audio``), what goes to Twilio (``sent``),
when a keypad collection begins and ends (``collecting``, through ``Call.on_collecting``).
Every ``FLUSH_EVERY_S`` it takes the audio that has become final and hands it to the recording
writer's thread (``RecordingWriter``), which writes it into the WAV under its ``.part`` name
(``WavSpool``): no file I/O on the loop, and memory per call bounded by a few seconds of audio.
``await finish(now)`` writes the rest, completes the file in a thread and returns its path
relative to the data directory, for ``CallRecord.recording``.

Where: ``data_dir/recordings/YYYY/MM/DD/<CallSid>.wav``, by the UTC date the call started
(``<CallSid>-2.wav`` for a second stream of the same call).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import functools
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from gateway.bridge.actions import Action
from gateway.recording.recorder import Chunk, Recorder
from gateway.recording.spool import WavSpool

#: How often the final audio goes to the file (seconds of call time).
FLUSH_EVERY_S = 5.0

_SAFE = re.compile(r"[^A-Za-z0-9_-]")

log = logging.getLogger("gateway.recording")


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
        #: The recorder failed (our bug, logged): nothing more is recorded, nothing is kept.
        self.broken = False

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
        """A keypad collection began (True) or ended at ``now`` (``Call.on_collecting``): the
        caller's side pauses meanwhile."""
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
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Path | None] = loop.create_future()
        # After this call's writes (the writer keeps their order): the header and the name.
        end = self.spool.discard if self.broken else self.spool.close
        WRITER.submit(lambda: _resolve(loop, done, end), urgent=True)
        written = await done
        if written is None or self.broken:
            return None
        relative = self.relative.with_name(written.name)
        self.log.info("recording written: %s (%.1f s)", relative, self.spool.frames / 8000)
        return str(relative)

    def _write(self, chunk: Chunk | None) -> None:
        if chunk is not None:
            WRITER.submit(functools.partial(self.spool.write, chunk))  # it logs its own failures


def _resolve(loop: asyncio.AbstractEventLoop, done: asyncio.Future[Any], work: Callable[[], Any]) -> None:
    """In the writer's thread: run ``work`` and hand its result (or error) to ``done``."""
    try:
        result, error = work(), None
    except Exception as e:  # noqa: BLE001 - handed to the awaiting call, which logs it
        result, error = None, e

    def settle() -> None:
        if not done.done():
            done.set_exception(error) if error is not None else done.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop has closed: nobody waits any more
        pass


class RecordingWriter:
    """The one thread that writes every call's recording.

    The event loop hands it work with ``submit``: an append to a deque, no lock, no wake-up,
    so a call pays nothing for it beyond the append (a thread pool's ``submit`` wakes a worker
    each time: measured under load with 80 calls, those wake-ups cost the loop more than the
    recording itself). The thread looks every ``every_s`` and does what has come, in order, so
    a call's pieces are written in the order they were taken, then its file is closed. Work a
    call waits for (``urgent``: completing its file when it ends) wakes it at once."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.every_s = every_s
        self._work: collections.deque[Callable[[], Any]] = collections.deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def submit(self, work: Callable[[], Any], *, urgent: bool = False) -> None:
        self._work.append(work)
        if self._thread is None:
            self._start()
        if urgent:
            self._wake.set()

    def _start(self) -> None:
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gateway-recording-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.every_s)
            self._wake.clear()
            while self._work:
                work = self._work.popleft()
                try:
                    work()
                except Exception:  # each piece of work handles its own; this is a bug of ours
                    log.exception("recording writer: a piece of work failed")


#: The process's recording writer.
WRITER = RecordingWriter()

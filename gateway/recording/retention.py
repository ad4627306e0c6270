"""How long recordings are kept (``GATEWAY_RECORDING_RETENTION_DAYS``; 0: for ever).

``delete_expired(data_dir, days, now)`` deletes the recordings under ``data_dir/recordings``
last written more than ``days`` days before ``now`` (a recording is last written when its call
ends), ``.part`` files a crashed process left included, and the day, month and year folders
it empties. It takes the time, so it is tested with explicit times. It walks the disk: run it in a thread.

``keep_recordings(settings)`` runs it in a thread at start-up and then every hour, for the
gateway's life (the application starts it with its other background work).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from gateway.settings import Settings

log = logging.getLogger("gateway.recording")

DAY_S = 86400.0
#: How often the retention runs.
EVERY_S = 3600.0
_SUFFIXES = (".wav", ".wav.part")


def delete_expired(data_dir: Path, days: int, now: float) -> list[Path]:
    """Delete recordings older than ``days`` days at ``now`` (Unix time); the paths deleted.
    ``days`` 0 (or less): nothing is deleted. A file that cannot be deleted is logged and
    skipped."""
    root = Path(data_dir) / "recordings"
    if days <= 0 or not root.is_dir():
        return []
    cutoff = now - days * DAY_S
    deleted: list[Path] = []
    for folder, _, names in os.walk(root, topdown=False):
        for name in names:
            if not name.endswith(_SUFFIXES):
                continue  # not ours
            path = Path(folder, name)
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    deleted.append(path)
            except FileNotFoundError:
                continue  # gone meanwhile (another instance's retention)
            except OSError as exc:
                log.error("recording %s could not be deleted: %s", path, exc)
        if Path(folder) != root:
            try:
                os.rmdir(folder)  # only if empty
            except OSError:
                pass  # not empty (or in use): kept, as it should be
    return deleted


async def keep_recordings(settings: Settings, *, every_s: float = EVERY_S,
                          clock: Callable[[], float] = time.time) -> None:
    """Delete expired recordings now and then every ``every_s`` seconds, in a thread, until
    cancelled. Returns at once if recordings are kept for ever."""
    days = settings.recording_retention_days
    if days <= 0:
        return
    while True:
        try:
            deleted = await asyncio.to_thread(delete_expired, settings.data_dir, days, clock())
        except Exception:  # a bug or a broken disk must not stop the next run, nor the gateway
            log.exception("deleting expired recordings failed")
        else:
            if deleted:
                log.info("deleted %d recording(s) older than %d day(s)", len(deleted), days)
        await asyncio.sleep(every_s)

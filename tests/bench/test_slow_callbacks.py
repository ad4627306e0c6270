"""bench/serve_profiled.py --slow-callbacks: a loop callback that holds the loop is logged, by
the coroutine it ran, and only while the log is on."""

from __future__ import annotations

import asyncio
import json
import time

from bench.serve_profiled import log_slow_callbacks


async def hog() -> None:
    await asyncio.sleep(0)
    time.sleep(0.02)  # holds the loop: what the log is for


async def quick() -> None:
    await asyncio.sleep(0)


async def both() -> None:
    await asyncio.gather(hog(), quick())


def test_a_callback_holding_the_loop_is_logged_by_its_coroutine(tmp_path):
    path = tmp_path / "slow.jsonl"
    undo = log_slow_callbacks(str(path), slow_ms=10.0)
    try:
        asyncio.run(both())
    finally:
        undo()
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    hogs = [e for e in entries if "hog" in e["what"]]
    assert len(hogs) == 1, entries
    assert hogs[0]["ms"] >= 20.0
    assert hogs[0]["what"].startswith("task hog")
    assert not [e for e in entries if "quick" in e["what"]]


def test_undo_stops_the_log(tmp_path):
    path = tmp_path / "slow.jsonl"
    log_slow_callbacks(str(path), slow_ms=10.0)()
    asyncio.run(hog())
    assert path.read_text() == ""

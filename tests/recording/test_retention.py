"""GATEWAY_RECORDING_RETENTION_DAYS: recordings older than that are deleted, nothing else."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from gateway.recording import delete_expired, keep_recordings
from gateway.settings import Settings
from tests.callflow.conftest import start_gateway  # noqa: F401 - a fixture

NOW = 1_800_000_000.0
DAY = 86400.0


def recording(data_dir: Path, relative: str, age_days: float) -> Path:
    path = data_dir / "recordings" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    os.utime(path, (NOW - age_days * DAY, NOW - age_days * DAY))
    return path


def settings(data_dir: Path, days: int) -> Settings:
    return Settings.from_mapping({
        "PUBLIC_URL": "https://gw.example.com", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "secret", "OPENAI_REALTIME_URL": "ws://127.0.0.1:1/v1/realtime",
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_RECORDING_RETENTION_DAYS": str(days),
    })


def test_only_recordings_older_than_the_retention_are_deleted(tmp_path: Path) -> None:
    old = recording(tmp_path, "2026/12/01/CAold.wav", 30.5)
    crashed = recording(tmp_path, "2026/12/01/CAcrashed.wav.part", 40)  # left by a crashed process
    kept = recording(tmp_path, "2026/12/20/CAkept.wav", 29.5)
    today = recording(tmp_path, "2027/01/15/CAnew.wav", 0)
    other = recording(tmp_path, "2026/12/01/notes.txt", 100)  # not a recording: not ours to delete
    assert sorted(delete_expired(tmp_path, 30, NOW)) == sorted([old, crashed])
    assert not old.exists() and not crashed.exists()
    assert kept.exists() and today.exists() and other.exists()


def test_emptied_day_folders_go_and_the_others_stay(tmp_path: Path) -> None:
    recording(tmp_path, "2026/11/02/CAa.wav", 60)
    recording(tmp_path, "2026/11/03/CAb.wav", 59)
    recording(tmp_path, "2026/12/20/CAc.wav", 1)
    delete_expired(tmp_path, 30, NOW)
    root = tmp_path / "recordings"
    assert not (root / "2026" / "11").exists()  # its days emptied: gone, and the month with them
    assert (root / "2026" / "12" / "20" / "CAc.wav").exists()
    assert root.is_dir()  # the root stays, even if empty


def test_zero_days_keeps_everything_and_a_missing_folder_is_nothing_to_do(tmp_path: Path) -> None:
    ancient = recording(tmp_path, "2001/01/01/CAold.wav", 9000)
    assert delete_expired(tmp_path, 0, NOW) == []
    assert ancient.exists()
    assert delete_expired(tmp_path / "nowhere", 30, NOW) == []


def test_the_boundary_is_exact(tmp_path: Path) -> None:
    just_kept = recording(tmp_path, "a/CAkept.wav", 7)  # exactly 7 days old: not older than 7
    just_gone = recording(tmp_path, "a/CAgone.wav", 7 + 1 / DAY)
    assert delete_expired(tmp_path, 7, NOW) == [just_gone]
    assert just_kept.exists()


async def test_keep_recordings_runs_at_start_then_on_its_period(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = recording(tmp_path, "2026/01/01/CA1.wav", 10)
    runs: list[float] = []

    def clock() -> float:
        runs.append(NOW)
        return NOW

    with caplog.at_level(logging.INFO, "gateway.recording"):
        task = asyncio.create_task(keep_recordings(settings(tmp_path, 7), every_s=0.05, clock=clock))
        try:
            for _ in range(200):
                if not first.exists():
                    break
                await asyncio.sleep(0.01)
            assert not first.exists()  # at start, without waiting for the period
            second = recording(tmp_path, "2026/01/02/CA2.wav", 8)
            for _ in range(200):
                if not second.exists():
                    break
                await asyncio.sleep(0.01)
            assert not second.exists()  # and again, a period later
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert len(runs) >= 2
    assert "deleted 1 recording(s) older than 7 day(s)" in caplog.text


async def test_keep_recordings_with_no_retention_returns_at_once(tmp_path: Path) -> None:
    kept = recording(tmp_path, "2001/01/01/CAold.wav", 9000)
    await asyncio.wait_for(keep_recordings(settings(tmp_path, 0)), timeout=1)
    assert kept.exists()


async def test_a_running_gateway_deletes_expired_recordings_at_start(start_gateway, tmp_path: Path) -> None:
    import time

    from tests.callflow.conftest import gateway_of

    old = recording(tmp_path, "2020/01/01/CAold.wav", age_days=0)
    os.utime(old, (time.time() - 40 * DAY, time.time() - 40 * DAY))
    recent = recording(tmp_path, "2026/11/30/CAnew.wav", age_days=0)
    os.utime(recent, (time.time() - 2 * DAY, time.time() - 2 * DAY))
    async with start_gateway([], GATEWAY_DATA_DIR=str(tmp_path), GATEWAY_RECORDING_RETENTION_DAYS="30") as (gateway, _):
        for _ in range(500):  # the start-up's background work runs it in a thread: wait for it
            if not old.exists():
                break
            await asyncio.sleep(0.01)
        assert gateway_of(gateway).startup.done
    assert not old.exists() and recent.exists()

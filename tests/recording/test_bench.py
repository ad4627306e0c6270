"""Smoke test of the recording benchmark (bench/recording.py): it runs, on a short call, and every
figure is a time. Nothing is asserted about speed (CI machines are noisy)."""

from __future__ import annotations

import math

from bench import recording


def test_the_recording_benchmark_measures_every_figure() -> None:
    figures = recording.measure(frames=1000, repeats=1)
    assert set(figures) == {"loop", "append", "recorder", "writer"}
    assert all(math.isfinite(us) and us > 0 for us in figures.values()), figures

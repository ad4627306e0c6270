"""bench/load.py --compression-ab: each bridge is told what its model connection offers, and
the table's cost is the median of the back-to-back pairs, not a ratio of medians."""

from __future__ import annotations

from pathlib import Path

from bench import load
from bench.harness import Step, gateway_env


def test_the_gateway_gets_the_steps_compression_as_its_setting() -> None:
    for c in ("none", "deflate"):
        env = gateway_env(Step("gateway", "pcm16", calls=1, model_compression=c), 8080, "ws://x", Path("/tmp/x"))
        assert env["GATEWAY_MODEL_COMPRESSION"] == c


def test_the_cost_is_the_median_of_the_pairs() -> None:
    def runs(*cpu: float) -> dict:
        return {"cpu_per_call_s_ms_runs": list(cpu), "steal": 0.0}

    # Pairs +10%, +50%, +20%: median +20%. The ratio of the medians would say +50% (3.0 / 2.0).
    table = load.compression_table({"relay none": runs(1.0, 2.0, 4.0), "relay deflate": runs(1.1, 3.0, 4.8)}, 80)
    line = next(row for row in table.splitlines() if row.startswith("relay "))
    assert line.split()[1:4] == ["2.00", "3.00", "+20.0%"]
    assert "relay: none 1.00, 2.00, 4.00; deflate 1.10, 3.00, 4.80" in table

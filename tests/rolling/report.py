"""The roll's figures, from every record of a ``Deployment``: what the test asserts and the
closing note quotes.

- per call (``tests.rolling.figures``): set up or refused, ended as planned or dropped, its
  audio gaps both ways;
- per gap, what the machine explains of it (``tests.rolling.stalls``) and what is left;
- the stored calls (the shared SQLite store, written by whichever instance carried each call);
- the answering-machine results: told to the agent (the stored call's events) and where each
  landed (the instances' logs);
- the roll: calls in progress at each SIGTERM, how long each step took.
"""

from __future__ import annotations

import collections
import statistics
import types
from dataclasses import dataclass

from gateway.store.sqlite import SqliteStore
from tests.rolling import figures
from tests.rolling.deployment import ANSWERED_BY, Deployment

__all__ = ["Left", "Report"]


@dataclass(frozen=True)
class Left:
    """What is left of a gap once the machine's part is taken off."""

    seconds: float
    measured: float  # the gap as measured
    call: figures.CallFigures | None

    def __str__(self) -> str:
        if self.call is None:
            return "0 ms"
        return (f"{1000 * self.seconds:.0f} ms (call {self.call.index}, {self.call.direction}: a gap of "
                f"{1000 * self.measured:.0f} ms)")


class Report:
    def __init__(self, deployment: Deployment) -> None:
        d = self.deployment = deployment
        by_sid: dict[str, list[dict]] = {}
        for conn in d.model_record["connections"]:
            by_sid.setdefault(conn["call_sid"] or "?", []).append(conn)
        self.outbound = [o for o in d.outbound if not o.skipped]
        calls = [figures.inbound_figures(types.SimpleNamespace(**r), int(r["group"]), by_sid.get(r["call_sid"], []))
                 for r in d.caller_record["calls"] if not r["skipped"]]
        calls += [figures.outbound_figures(o, by_sid.get(o.call_sid or "", [])) for o in self.outbound]
        self.calls = sorted(calls, key=lambda f: f.index)
        self.logs = d.logs()

        self.refused = [f for f in self.calls if f.refused]
        self.dropped = [f for f in self.calls if f.dropped]
        store = SqliteStore(d.data_dir / "calls.sqlite3")
        try:
            self.stored = {f.call_sid: store.get(f.call_sid) for f in self.calls if f.call_sid}
        finally:
            store.close()
        self.end_reasons = collections.Counter((self.stored.get(f.call_sid) or {}).get("end_reason")
                                               for f in self.calls if not f.refused)
        self.reconnected = [sid for sid, call in self.stored.items() if call and call["figures"].get("reconnects")]
        self._gaps()
        self._amd()
        self._roll()

    def _gaps(self) -> None:
        d, stalls = self.deployment, self.deployment.stalls
        stalls.add_lag("caller", d.caller_record["lag_t"], d.caller_record["lag"])
        stalls.add_lag("model", d.model_record["lag_t"], d.model_record["lag"])
        stalls.add_lag("test", d.lag_t, d.lag)
        held_by = figures.holders(self.logs)
        self.out_gap = max(((f.out_gap_s, f) for f in self.calls if f.out_gap_s is not None), key=lambda g: g[0])
        self.in_gap = max(((f.in_gap_s, f) for f in self.calls if f.in_gap_s is not None), key=lambda g: g[0])
        self.out_median = statistics.median(f.out_gap_s for f in self.calls if f.out_gap_s is not None)
        self.in_median = statistics.median(f.in_gap_s for f in self.calls if f.in_gap_s is not None)
        self.out_left = self.in_left = Left(0.0, 0.0, None)
        for f in self.calls:
            # The path: the instance holding the call and HAProxy; the harness at its ends: the
            # caller's side (the load generator, or this process for an outbound call's callee)
            # and the Realtime server.
            path = [held_by.get(f.call_sid or "", "?"), "haproxy"]
            harness = ["caller" if f.direction == "inbound" else "test", "model"]
            for a, b in f.out_gaps:
                left = Left(b - a - stalls.explained(a, b, path, harness), b - a, f)
                self.out_left = max(self.out_left, left, key=lambda g: g.seconds)
            for a, b in f.in_gaps:
                left = Left(b - a - stalls.explained(a, b, path, harness), b - a, f)
                self.in_left = max(self.in_left, left, key=lambda g: g.seconds)

    def _amd(self) -> None:
        self.told = [o.call_sid for o in self.outbound if o.call_sid and any(
            e.get("event") == "answered_by" and e.get("answered_by") == ANSWERED_BY
            for e in (self.stored.get(o.call_sid) or {}).get("events", []))]
        lines = figures.amd_lines(self.logs)
        self.amd_outcomes = {o.call_sid: lines.get(o.call_sid or "", []) for o in self.outbound}
        # Landed elsewhere: the instance it reached forwarded it (to the home, to the holder).
        self.elsewhere = [sid for sid, found in self.amd_outcomes.items()
                          if len(found) == 1 and "forwarded" in found[0][2] and found[0][2].endswith("told the call")]
        # ... and of those, the ones that took both hops: landed on one instance, placed on a
        # second (the home), held by a third.
        self.two_hops = [sid for sid in self.elsewhere if "forwarded to its home" in self.amd_outcomes[sid][0][2]
                         and "forwarded to its holder" in self.amd_outcomes[sid][0][2]]
        self.amd_answers = [[c.status for c in o.call.callbacks if c.kind == "amd"] for o in self.outbound if o.call]

    def _roll(self) -> None:
        d = self.deployment
        terms = [roll.old.terminated for roll in d.rolls]
        self.in_progress = [sum(1 for f in self.calls if f.stream_open is not None and f.stream_open <= t
                                and (f.stream_end is None or f.stream_end > t)) for t in terms]
        self.during_drains = sum(1 for f in self.calls if f.stream_open is not None
                                 and terms[0] <= f.stream_open <= d.rolled)
        self.roll_s = d.rolled - d.rolls[0].new.started

    def summary(self) -> str:
        d = self.deployment
        backend = d.haproxy_stat.get("BACKEND", {})
        lines = [
            f"rolling deploy: {len(self.calls)} calls placed ({len(self.calls) - len(self.outbound)} incoming, "
            f"{len(self.outbound)} outbound) over {d.stopped - d.base:.0f} s; {self.during_drains} set up between "
            f"the first SIGTERM and the last old instance's exit",
            f"  in progress at each SIGTERM: {', '.join(map(str, self.in_progress))} "
            f"(the instance stopped held {', '.join(str(r.to_drain) for r in d.rolls)})",
            f"  dropped: {len(self.dropped)}; refused: {len(self.refused)}; webhooks redirected by a draining "
            f"instance: {sum(f.redirects for f in self.calls)}; HAProxy retries {backend.get('wretr', '?')}, "
            f"redispatches {backend.get('wredis', '?')}",
            f"  stored end reasons: {dict(self.end_reasons)}",
            f"  longest audio gap: agent -> caller {1000 * self.out_gap[0]:.0f} ms (call {self.out_gap[1].index}, "
            f"{self.out_gap[1].direction}; median of the calls' longest {1000 * self.out_median:.0f} ms); "
            f"caller -> model {1000 * self.in_gap[0]:.0f} ms beyond the 20 ms cadence (call {self.in_gap[1].index}, "
            f"{self.in_gap[1].direction}; median {1000 * self.in_median:.0f} ms)",
            f"  not explained by the machine (CPU waits of the gateway and HAProxy, the harness's stalls): "
            f"agent -> caller {self.out_left}; caller -> model {self.in_left}",
            f"  the harness's own longest stall: load generator {_ms(d.caller_record['lag'])}, "
            f"model server {_ms(d.model_record['lag'])}, this process {_ms(d.lag)}",
            *(f"  slot {r.slot}: new instance up in {r.new.ready - r.new.started:.1f} s; the old one down at "
              f"HAProxy {1000 * r.down_s:.0f} ms after its SIGTERM, drained {r.to_drain} calls and exited "
              f"{_since(r.old.exited, r.old.terminated)} after it: {_since(r.old.exited, r.new.started)} in all"
              for r in d.rolls),
            f"  roll: {self.roll_s:.1f} s from the first new instance's start to the last old one's exit",
            f"  answering-machine results: {len(self.told)} of {len(self.outbound)} reached their agents; "
            f"{len(self.elsewhere)} landed on an instance other than the call's holder ({len(self.two_hops)} "
            f"on neither its home nor its holder)",
            f"  test: {d.stopped_all - d.began:.0f} s ({d.started_s:.0f} s to start everything)",
        ]
        return "\n".join(lines)

    def detail(self, bad: list[figures.CallFigures]) -> str:
        return "; ".join(f"call {f.index} ({f.direction} {f.call_sid}): {f.refused or f.dropped}" for f in bad[:5])


def _ms(values: object) -> str:
    return f"{1000 * max(values, default=0.0):.0f} ms"  # type: ignore[call-overload]


def _since(later: float | None, earlier: float | None) -> str:
    return "?" if later is None or earlier is None else f"{later - earlier:.1f} s"

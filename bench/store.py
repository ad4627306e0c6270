"""What storing a finished call costs: on the event loop, and in the writer's thread.

    python bench/store.py                      # SQLite in a temporary directory
    python bench/store.py --database-url postgresql://...   # and a PostgreSQL of yours

A call's record is stored once, when it ends (gateway.store.writer): the event loop only
queues it (``RecordWriter.submit``); the writer's thread turns it into its stored form
(``stored_call``: redaction, the lists) and saves it. ``bench/load.py --observability`` measures
metrics and recording under load, but its calls all end after the measured window, so the
store's share is measured here, per call, on records the size of a real call's: a 3-minute call
with 40 agent turns, 8 barge-ins, 6 tool calls, 12 keypresses and an 80-item transcript.

Printed beside the baseline of the same run: ``json.dumps`` of the same stored form, the least
any store does. The cost per call-second is the per-call cost spread over the call's length.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.bridge.ending import EndReason  # noqa: E402
from gateway.bridge.events import (  # noqa: E402
    AgentChosen,
    AgentTurn,
    BargeIn,
    CallEnded,
    CallStarted,
    DigitPressed,
    FirstAudio,
    ModelConnected,
    ToolCalled,
    ToolReturned,
)
from gateway.bridge.record import CallRecord  # noqa: E402
from gateway.store.stored import stored_call  # noqa: E402
from gateway.store.writer import RecordWriter  # noqa: E402

CALL_S = 180.0


def a_call(n: int) -> CallRecord:
    """A 3-minute call's record, built from its events as a call builds it."""
    record = CallRecord()
    record.add(CallStarted(t=0.0, call_sid=f"CA{n:032x}", stream_sid=f"MZ{n:032x}", from_="+15550001111",
                           to="+15550002222", direction="inbound"))
    record.add(AgentChosen(t=0.0, agent="Support"))
    record.add(ModelConnected(t=0.2, seconds=0.2))
    record.add(FirstAudio(t=0.6, seconds=0.6))
    for k in range(40):
        t = 4.0 * k + 1
        record.add(AgentTurn(t=t, agent="Support", seconds=2.5))
        if k % 5 == 0:
            record.add(BargeIn(t=t + 1, item_id=f"item_{k}", heard_ms=1200, clear_ms=1.1))
        if k % 7 == 0:
            record.add(ToolCalled(t=t + 2, tool="lookup_order", arguments='{"order_number": "A12345"}'))
            record.add(ToolReturned(t=t + 2.1, tool="lookup_order", output="Order A12345 shipped on Monday."))
    for k in range(12):
        record.add(DigitPressed(t=150 + k / 2, digit=str(k % 10), collected=k >= 6))
    record.add(CallEnded(t=CALL_S, reason=EndReason.CALLER_HUNG_UP))
    for k in range(80):
        role = "user" if k % 2 else "assistant"
        record.transcript.append({"item_id": f"item_{k}", "type": "message", "role": role, "status": "completed",
                                  "text": "A sentence of about the length people say on the phone, or so. " * 2})
    return record


def timed(work, n: int) -> list[float]:
    """Seconds per call of ``work(i)``, for ``n`` calls, in 5 rounds."""
    rounds = []
    for r in range(5):
        began = time.perf_counter()
        for i in range(n):
            work(r * n + i)
        rounds.append((time.perf_counter() - began) / n)
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="records per round (default 200)")
    parser.add_argument("--database-url", help="also measure this PostgreSQL database")
    args = parser.parse_args(argv)
    records = [a_call(i) for i in range(args.calls * 5)]
    import json

    rows = [("baseline: json.dumps of the stored form", timed(lambda i: json.dumps(stored_call(records[i])), args.calls))]

    stores = []
    with tempfile.TemporaryDirectory() as tmp:
        from gateway.store.sqlite import SqliteStore

        stores.append(("SQLite", SqliteStore(Path(tmp) / "calls.sqlite3")))
        if args.database_url:
            from gateway.store.postgres import PostgresStore

            stores.append(("PostgreSQL", PostgresStore(args.database_url)))
        for name, store in stores:
            writer = RecordWriter(store)  # not started: submit alone is what the loop pays
            rows.append((f"event loop: RecordWriter.submit ({name})", timed(lambda i: writer.submit(records[i]), args.calls)))
            writer._queue.clear()
            rows.append((f"writer thread: stored_call + save ({name})",
                         timed(lambda i: store.save(stored_call(records[i])), args.calls)))
            store.close()

    print(f"storing a call's record ({CALL_S:.0f} s call, {len(records[0].timeline)} events, "
          f"{len(records[0].transcript)} transcript items), median of 5 rounds of {args.calls}:")
    width = max(len(name) for name, _ in rows)
    print(f"{'':<{width}}  {'per call':>10}  {'per call-second':>16}")
    for name, rounds in rows:
        per_call = statistics.median(rounds)
        print(f"{name:<{width}}  {per_call * 1e3:>7.3f} ms  {per_call / CALL_S * 1e6:>13.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

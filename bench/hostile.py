"""Hostile load: thousands of hostile connections against a real ``gateway serve``; its log
volume and its memory.

    python bench/hostile.py                                  # 1,600 connections, ~110,000 messages
    python bench/hostile.py --connections 4800 --concurrency 400   # 400 at a time, three waves
    python bench/hostile.py --tracemalloc --warmup 0.02      # what grew after the warm-up, by site
    python bench/hostile.py --env MALLOC_ARENA_MAX=1         # a setting for the gateway's process

The gateway runs alone on core 0 (``bench/serve_profiled.py --tracemalloc`` with
``--tracemalloc``) with the bench's production settings and ``GATEWAY_LOG_LEVEL=INFO``; the
local Realtime server (``bench/model.py``) and this process, the attacker, on core 1. Every
handshake is signed (the attacker knows the auth token, as in the reliability run of issue 11,
item 3), and the connections come from 127.0.0.1, ``--concurrency`` at a time. Each one is, by
weighted draw (``KINDS``, ``--kinds`` to choose): a stream that sends unknown events before
``start`` and then leaves (some of them 60 KiB each, under the 64 KiB limit), or is refused for
its last message (not JSON, binary, invalid UTF-8, media before ``start``, a forged token, a
message over 64 KiB, a flood past the rate limit); a handshake with a wrong signature; a
genuine call (valid token) that sends unknown events among its media; or a stream that never
starts (refused after ``GATEWAY_START_TIMEOUT_S``, so a run lasts at least that long). A stream
sends 1 to 120 messages (60 on average, like the reliability run's 100,000 over 1,633).

Printed: the messages and connections; the gateway's log (records, by logger and level;
lines; bytes); its resident memory (``VmRSS``) at start, after the warm-up (the first
``--warmup`` share of the connections), at the end, and its peak; with ``--tracemalloc``, the
Python memory traced after the warm-up and the allocation sites that grew most (the whole
list, with call stacks, in ``tracemalloc.txt``); and what other processes and the hypervisor
took of each core meanwhile (a busy machine blurs the timing, not the counts). Only 127.0.0.1;
bounded by ``--connections``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import websockets  # noqa: E402

from bench.harness import (  # noqa: E402
    ACCOUNT_SID,
    AUTH_TOKEN,
    BENCH,
    LOAD_CORE,
    ROOT,
    SUT_CORE,
    Proc,
    Step,
    core_times,
    free_port,
    gateway_env,
    get_json,
    pin_self_to_load_core,
    wait_for_quiet,
    wait_healthy,
)
from gateway.security import TwilioSignatures  # noqa: E402
from gateway.testing.caller.twiml import fetch_twiml, new_sid, parse_stream_twiml, webhook_form  # noqa: E402

#: Kinds of connection and their weights.
KINDS = {
    "unknown events, then leaves": 3,
    "not JSON": 2,
    "binary frame": 1,
    "invalid UTF-8": 1,
    "media before start": 1,
    "forged token": 2,
    "over 64 KiB": 1,
    "60 KiB messages": 1,
    "flood": 0.3,
    "bad signature": 1,
    "genuine call": 1,
    "never starts": 0.1,
}
#: A gateway log record starts with the time (gateway.logformat.TEXT_FORMAT).
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) +([\w.]+): ")


class Attacker:
    def __init__(self, base_url: str, seed: int) -> None:
        self.base_url = base_url
        self.stream_url = base_url.replace("http://", "ws://") + "/twilio/media"
        self.signature = TwilioSignatures(AUTH_TOKEN).sign(self.stream_url, {})
        self.rng = random.Random(seed)
        self.messages = 0
        self.kinds: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()

    def unknown(self, n: int, sid: str = "") -> list[str]:
        return [json.dumps({"event": f"hostile{self.rng.randrange(10**6)}", "streamSid": sid}) for _ in range(n)]

    async def connection(self, kind: str) -> None:
        self.kinds[kind] += 1
        n = self.rng.randint(1, 120)
        try:
            if kind == "bad signature":
                await websockets.connect(self.stream_url, additional_headers={"X-Twilio-Signature": "forged"})
            elif kind == "genuine call":
                await self.genuine(n)
            else:
                await self.stream(kind, n)
        except websockets.InvalidStatus:
            pass  # 403: what a bad signature gets
        except (OSError, websockets.WebSocketException, TimeoutError) as exc:
            self.errors[f"{kind}: {type(exc).__name__}"] += 1

    async def stream(self, kind: str, n: int) -> None:
        last: list[tuple[str | bytes, bool]] = {
            "unknown events, then leaves": [],
            "not JSON": [("{not json", True)],
            "binary frame": [(b"\x00\x01", False)],
            "invalid UTF-8": [(b'{"event": "\xff"}', True)],
            "media before start": [(json.dumps({"event": "media", "streamSid": "MZ1"}), True)],
            "forged token": [(forged_start(), True)],
            "over 64 KiB": [("x" * 70_000, True)],
            "flood": [(m, True) for m in self.unknown(600)],
            "60 KiB messages": [(json.dumps({"event": "hostile", "pad": "x" * 60_000}), True)] * (n // 4),
            "never starts": [],
        }[kind]
        frames = [(m, True) for m in self.unknown(n - len(last) if len(last) < n else 0)] + last
        async with websockets.connect(self.stream_url, additional_headers={"X-Twilio-Signature": self.signature},
                                      compression=None, max_size=None, open_timeout=30) as ws:
            try:
                for frame, text in frames:
                    await ws.send(frame, text=text)
                    self.messages += 1
                if kind == "never starts":
                    await asyncio.wait_for(ws.recv(), 30)  # the start timeout closes it
                elif last and kind != "60 KiB messages":
                    await asyncio.wait_for(ws.recv(), 10)  # refused: closed
            except websockets.ConnectionClosed:
                pass

    async def genuine(self, n: int) -> None:
        call_sid = new_sid("CA")
        form = webhook_form(call_sid=call_sid, account_sid=ACCOUNT_SID, from_="+15550001111", to="+15550002222")
        stream = parse_stream_twiml(await fetch_twiml(self.base_url + "/twilio/voice", form, AUTH_TOKEN))
        sid = new_sid("MZ")
        start = {"event": "start", "sequenceNumber": "1", "streamSid": sid,
                 "start": {"streamSid": sid, "accountSid": ACCOUNT_SID, "callSid": call_sid, "tracks": ["inbound"],
                           "customParameters": dict(stream.parameters),
                           "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
        payload = base64.b64encode(b"\xff" * 160).decode()
        frames = [json.dumps(start)]
        for i, event in enumerate(self.unknown(max(0, n - 2), sid)):
            frames.append(event if i % 2 else json.dumps({
                "event": "media", "sequenceNumber": str(i + 2), "streamSid": sid,
                "media": {"track": "inbound", "chunk": str(i), "timestamp": str(20 * i), "payload": payload}}))
        frames.append(json.dumps({"event": "stop", "sequenceNumber": str(n + 2), "streamSid": sid,
                                  "stop": {"accountSid": ACCOUNT_SID, "callSid": call_sid}}))
        async with websockets.connect(stream.url, additional_headers={"X-Twilio-Signature": self.signature},
                                      compression=None, max_size=None, open_timeout=30) as ws:
            try:
                for frame in frames:
                    await ws.send(frame)
                    self.messages += 1
                    await asyncio.sleep(0)
                while True:
                    await asyncio.wait_for(ws.recv(), 10)  # until the gateway ends the call
            except websockets.ConnectionClosed:
                pass

    async def run(self, count: int, concurrency: int, on_progress: Any, kinds: list[str]) -> None:
        names, weights = kinds, [KINDS[k] for k in kinds]
        plan = self.rng.choices(names, weights, k=count)
        slow = [asyncio.create_task(self.connection(k)) for k in plan if k == "never starts"]
        queue = collections.deque(k for k in plan if k != "never starts")
        done = 0

        async def worker() -> None:
            nonlocal done
            while queue:
                await self.connection(queue.popleft())
                done += 1
                on_progress(done + len(slow))

        await asyncio.gather(*(worker() for _ in range(concurrency)), *slow)


def forged_start() -> str:
    sid, call_sid = new_sid("MZ"), new_sid("CA")
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": sid,
                       "start": {"streamSid": sid, "accountSid": ACCOUNT_SID, "callSid": call_sid,
                                 "tracks": ["inbound"], "customParameters": {"token": "forged"},
                                 "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


def own_cpu(gateway: Proc, model: Proc) -> dict[int, float]:
    """CPU seconds used so far by our processes, by the core each is pinned to."""
    t = os.times()
    return {SUT_CORE: gateway.cpu(), LOAD_CORE: model.cpu() + t.user + t.system}


def log_summary(path: Path) -> dict[str, Any]:
    records: collections.Counter[str] = collections.Counter()
    lines = 0
    for line in path.read_text(errors="replace").splitlines():
        lines += 1
        found = RECORD.match(line)
        if found:
            records[f"{found.group(2)} {found.group(1)}"] += 1
    return {"records": records, "lines": lines, "bytes": path.stat().st_size}


def growth_sites(path: Path, top: int) -> list[str]:
    """The first lines of ``serve_profiled.write_growth``'s entries: size, and where."""
    text = path.read_text()
    rows = [text.splitlines()[0]]
    for entry in text.split("\n\n")[1:top + 1]:
        lines = entry.strip().splitlines()
        where = next((ln.strip() for ln in lines[1:] if ln.strip().startswith("File ")), "?")
        where = where.replace(f'"{ROOT}/', '"')  # paths within the repository, site-packages, stdlib
        where = re.sub(r'File ".*?/lib/python3\.\d+/', 'File "', re.sub(r'File ".*?site-packages/', 'File "', where))
        rows.append(f"{lines[0].split(' (now')[0]:>32}  {where}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--connections", type=int, default=1600, help="hostile connections (default 1600)")
    parser.add_argument("--concurrency", type=int, default=20, help="connections at once (default 20)")
    parser.add_argument("--warmup", type=float, default=0.25,
                        help="share of the connections before the memory baseline (default 0.25)")
    parser.add_argument("--kinds", help="only these kinds of connection (comma-separated names from KINDS)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the gateway's memory (slower) and list what grew after the warm-up")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the gateway (repeatable)")
    parser.add_argument("--out", help="directory for logs and results (default: a new temporary one)")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",") if args.kinds else list(KINDS)
    if not set(kinds) <= set(KINDS):
        parser.error(f"--kinds: choose from {', '.join(KINDS)}")
    pin_self_to_load_core()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gateway-hostile-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"results in {out}", flush=True)
    wait_for_quiet(timeout=60, log=print)

    py = sys.executable
    model_port, port = free_port(), free_port()
    model = Proc("model", [py, str(BENCH / "model.py"), "--port", str(model_port), "--reply-seconds", "3",
                           "--out", str(out / "model.pickle")], core=LOAD_CORE, log=out / "model.log",
                 stdout_pipe=True)
    step = Step("gateway", "g711_ulaw", extra_env=dict(item.split("=", 1) for item in args.env))
    env = gateway_env(step, port, f"ws://127.0.0.1:{model_port}/v1/realtime", out / "data")
    command = ["serve", "--port", str(port), "--workers", "1", "--env-file", "/dev/null"]
    argv_ = ([py, str(BENCH / "serve_profiled.py"), "--tracemalloc", str(out / "tracemalloc.txt"), "--", *command]
             if args.tracemalloc else [py, "-m", "gateway", *command])
    gateway = Proc("gateway", argv_, core=SUT_CORE, env=env, log=out / "gateway.log")
    procs = [model, gateway]
    try:
        model.readline(60)
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(gateway, base_url + "/healthz")
        rss: list[tuple[float, float]] = []
        marks: dict[str, float] = {}
        t0, cores0, ours0 = time.monotonic(), core_times(), own_cpu(gateway, model)
        marks["start"] = gateway.rss() / 2**20
        attacker = Attacker(base_url, args.seed)
        warm = max(1, int(args.warmup * args.connections))

        def progress(done: int) -> None:
            if done >= warm and "warm" not in marks:
                marks["warm"] = gateway.rss() / 2**20
                if args.tracemalloc:
                    gateway.signal(signal.SIGUSR1)  # the baseline snapshot
            if done % 200 == 0:
                print(f"  {done} connections, {attacker.messages} messages, {gateway.rss() / 2**20:.1f} MB, "
                      f"{time.monotonic() - t0:.0f} s", flush=True)

        async def attack() -> None:
            async def sample() -> None:
                while True:
                    rss.append((time.monotonic() - t0, gateway.rss() / 2**20))
                    await asyncio.sleep(1.0)

            sampler = asyncio.create_task(sample())
            await attacker.run(args.connections, args.concurrency, progress, kinds)
            sampler.cancel()

        asyncio.run(attack())
        elapsed, cores1, ours1 = time.monotonic() - t0, core_times(), own_cpu(gateway, model)
        time.sleep(2.0)  # the last calls' ends
        marks["end"] = gateway.rss() / 2**20
        health = get_json(base_url + "/healthz")
        if args.tracemalloc:
            gateway.signal(signal.SIGUSR2)
            deadline = time.monotonic() + 120
            while not (out / "tracemalloc.txt").exists() and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(2.0)
    finally:
        for proc in procs:
            proc.stop()

    logs = log_summary(out / "gateway.log")
    records = sum(logs["records"].values())
    print(f"\n== hostile load: {args.connections} connections ({args.concurrency} at a time), "
          f"{attacker.messages} messages in {elapsed:.0f} s ==")
    print("connections: " + ", ".join(f"{k} {n}" for k, n in attacker.kinds.most_common()))
    if attacker.errors:
        print("client-side errors: " + ", ".join(f"{k} {n}" for k, n in attacker.errors.most_common()))
    print(f"after: {health}")
    print(f"\ngateway log: {records} records ({1e4 * records / max(1, attacker.messages):.0f} per 10,000 messages), "
          f"{logs['lines']} lines, {logs['bytes'] / 1024:.0f} KiB")
    for name, n in logs["records"].most_common():
        print(f"  {n:7d}  {name}")
    peak = max([mb for _, mb in rss] + [marks["end"]])
    print(f"\nresident memory (MB): start {marks['start']:.1f}, after {warm} connections {marks.get('warm', 0):.1f}, "
          f"end {marks['end']:.1f}, peak {peak:.1f}; after the warm-up {marks['end'] - marks.get('warm', 0):+.1f}; "
          f"peak over start per connection at once {1024 * (peak - marks['start']) / args.concurrency:.0f} KB")
    print("  by time (s, MB): " + ", ".join(f"{t:.0f} {mb:.0f}" for t, mb in rss[:: max(1, len(rss) // 12)]))
    if args.tracemalloc:
        print("  (with --tracemalloc, resident memory includes the tracer's own and its snapshots': read the "
              "traced figures below)")
    if args.tracemalloc and (out / "tracemalloc.txt").exists():
        print("\nwhat grew after the warm-up (tracemalloc, by allocation site):")
        for row in growth_sites(out / "tracemalloc.txt", 15):
            print("  " + row)
    print("\nmachine, during the run (share of a core):")
    for core in sorted(cores1):
        busy = (cores1[core]["busy"] - cores0[core]["busy"]) / elapsed
        steal = (cores1[core]["steal"] - cores0[core]["steal"]) / elapsed
        ours = (ours1.get(core, 0.0) - ours0.get(core, 0.0)) / elapsed
        role = {SUT_CORE: "gateway", LOAD_CORE: "attacker and model"}.get(core, "")
        print(f"  core {core} ({role}): ours {100 * ours:.0f}%, other processes {100 * max(0.0, busy - ours):.0f}%, "
              f"hypervisor steal {100 * steal:.1f}%")
    print(f"\nlogs and results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

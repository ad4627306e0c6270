"""``gateway demo``: one complete phone call, offline, through the real gateway.

It starts a fake Twilio, the local Realtime server and the gateway (real uvicorn, real Agents
SDK) on 127.0.0.1, and places a call to Ava of Acme Outfitters (``gateway.demo.agent``): the
agent greets; the caller asks about a late order; the agent answers at length and the caller
talks over it (barge-in: Twilio ``clear``, the reply truncated at what was heard); the agent
asks for the order number and the caller types it (``collect_digits``); the agent looks it up
(``lookup_order``) and answers; the caller says thanks; the agent says goodbye and hangs up
(``hang_up``, once the goodbye was heard).

The terminal shows the call as it happens, then a summary of the figures that matter. The
call's artifacts go to a folder: ``call.wav``, ``transcript.json``, ``events.jsonl``,
``timeline.png`` (see ``gateway.demo.artifacts``).

``--real``: the same call with OpenAI's model instead of the local one (``OPENAI_API_KEY``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from gateway.demo import clips
from gateway.demo.agent import demo_agent, demo_script, on_turn
from gateway.demo.live import LiveView
from gateway.demo.record import Recorder
from gateway.testing.phone import PhoneCall, PhoneSystem

__all__ = ["DemoResult", "Step", "run_demo", "main"]

#: The caller presses these keys when asked for the order number.
ORDER_KEYS = "4271#"
#: The caller talks over the agent's long answer this far into it (ms heard).
BARGE_IN_AFTER_MS = 3000


@dataclasses.dataclass(frozen=True)
class Step:
    """One thing the caller does or waits for; the progress bar counts them."""

    label: str
    run: Callable[[PhoneCall], Awaitable[Any]]


@dataclasses.dataclass
class DemoResult:
    out: Path
    call: PhoneCall
    phone: PhoneSystem
    recorder: Recorder
    summary: list[str]
    artifacts: list[Path]
    wall_s: float


def caller_plan(view: LiveView) -> list[Step]:
    """What the person on the phone does, in order."""

    async def say(call: PhoneCall, name: str) -> None:
        clip = clips.load(name)
        view.caller_says(clip.text)
        await call.say(clip, timeout=clip.ms / 1000 / call.caller.clock.speed + 10)

    async def barge_in(call: PhoneCall) -> None:
        # A few seconds into the answer (or, with a real model that kept it short, once it is
        # done), the caller talks over the agent.
        start = call.caller.heard_ms

        def far_enough() -> bool:
            return call.caller.heard_ms - start >= BARGE_IN_AFTER_MS or (
                call.caller.heard_ms > start and not call.caller.playing and call._idle())

        await call.caller.wait_until(far_enough, timeout=60)
        await say(call, "caller_barge_in")

    async def press(call: PhoneCall) -> None:
        view.caller_presses(ORDER_KEYS)
        await call.press(ORDER_KEYS, gap_ms=500)

    async def listen(call: PhoneCall) -> None:
        await call.listen(timeout=60)

    return [
        Step("the agent greets the caller", listen),
        Step("the caller asks about an order", lambda c: say(c, "caller_order_late")),
        Step("the agent answers; the caller cuts in", barge_in),
        Step("the agent asks for the order number", listen),
        Step("the caller types it on the keypad", press),
        Step("the agent looks the order up", listen),
        Step("the caller says thanks", lambda c: say(c, "caller_thanks")),
        Step("the agent says goodbye and hangs up", listen),
    ]


async def run_demo(
    out: Path,
    *,
    real: bool = False,
    speed: float = 1.0,
    stream: TextIO = sys.stdout,
    live: bool | None = None,
    api_key: str | None = None,
    realtime_url: str | None = None,
) -> DemoResult:
    """Run the demo call; write the artifacts to ``out``; return what happened.

    ``real``: no local Realtime server; the gateway connects with ``api_key`` to OpenAI, or to
    ``realtime_url`` if given (any server speaking the protocol: the tests use the local one
    behind an API key, to run this path offline)."""
    from gateway.demo.artifacts import summarize, write_artifacts

    began = time.monotonic()
    view = LiveView(stream, live=stream.isatty() if live is None else live)
    recorder = Recorder(listener=view.session_event)
    settings: dict[str, str] = {}
    options: dict[str, Any] = {}
    if real:
        if not api_key:
            raise SystemExit("gateway demo --real needs OPENAI_API_KEY (in the environment or .env)")
        settings["OPENAI_API_KEY"] = api_key
        if realtime_url:
            settings["OPENAI_REALTIME_URL"] = realtime_url
    else:
        options["realtime_options"] = {"on_turn": on_turn}
    phone = PhoneSystem(
        demo_agent(), () if real else demo_script(), speed=speed, on_event=recorder,
        settings=settings, real_model=real, **options,
    )
    plan = caller_plan(view)
    view.start(len(plan), model="OpenAI (--real)" if real else "local Realtime server")
    async with phone:
        view.note("phone", f"+15550001111 dials {phone.number}; Twilio asks {phone.url}/twilio/voice")
        call = await phone.call()
        view.attach(call)
        try:
            for i, step in enumerate(plan):
                view.step(i, step.label)
                await step.run(call)
            await call.ended(timeout=30)
        finally:
            view.stop()
        summary = summarize(call, recorder)
        artifacts = write_artifacts(out, call, recorder, summary, real=real)
    view.finish(summary, artifacts)
    return DemoResult(out, call, phone, recorder, summary, artifacts, time.monotonic() - began)


def _log_to(path: Path) -> logging.Handler:
    """The gateway's own log goes to a file: the terminal is the live view's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    # Append mode: uvicorn's logging.config.dictConfig closes every existing handler, and a
    # closed FileHandler reopens itself on the next record only in append mode.
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def main(out: str = "demo-call", real: bool = False, speed: float = 1.0) -> int:
    """The ``gateway demo`` command."""
    handler = _log_to(Path(out) / "gateway.log")
    api_key = os.environ.get("OPENAI_API_KEY")
    if real and not api_key:
        with contextlib.suppress(OSError):
            from gateway.settings import read_env_file

            api_key = read_env_file(Path(".env")).get("OPENAI_API_KEY")
    try:
        asyncio.run(run_demo(Path(out), real=real, speed=speed, api_key=api_key))
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    return 0

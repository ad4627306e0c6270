"""The demo's terminal view: events as they happen, who is speaking, a progress bar.

On a terminal, a status line at the bottom is redrawn ten times a second and event lines
scroll above it, in colour. Into a pipe or a file, only the event lines are written, plainly.

The status line is cut to the terminal's width: a line that wraps cannot be redrawn in place
(``\r`` returns to the start of the last row only), so each redraw would leave a copy behind.
Colour is off when ``NO_COLOR`` is set and not empty (https://no-color.org/).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from gateway.demo.record import SessionEvent
    from gateway.testing.phone import PhoneCall

_COLOURS = {"agent": "32", "caller": "34", "phone": "36", "tool": "35", "barge-in": "31",
            "error": "31", "keypad": "34", "step": "1", "gateway": "33"}
_BAR = 24
_MIN_BAR = 8


class LiveView:
    def __init__(self, stream: TextIO, *, live: bool) -> None:
        self.stream = stream
        self.live = live
        self.colour = live and not os.environ.get("NO_COLOR")
        self.call: PhoneCall | None = None
        self._t0 = 0.0
        self._steps = 0
        self._step = 0
        self._label = ""
        self._task: asyncio.Task[None] | None = None
        self._speaking_items: set[str] = set()
        self._status_shown = False

    # --- Lifecycle ------------------------------------------------------------------------------

    def start(self, steps: int, *, model: str) -> None:
        self._steps = steps
        self._write(self._paint("Offline phone call demo", "step") + f"  (model: {model})\n"
                    "A caller phones Ava at Acme Outfitters through the gateway: real sockets, "
                    "real Agents SDK, simulated Twilio.\n\n")

    def attach(self, call: PhoneCall) -> None:
        self.call = call
        self._t0 = call.caller.clock.to_monotonic(0.0)
        self.note("phone", f"stream started ({call.call_sid}); the gateway connected the model")
        self._task = asyncio.get_running_loop().create_task(self._tick())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._clear_status()

    # --- What happens ---------------------------------------------------------------------------

    def step(self, index: int, label: str) -> None:
        self._step, self._label = index, label
        self.note("step", f"[{index + 1}/{self._steps}] {label}")

    def caller_says(self, text: str) -> None:
        self.note("caller", f'says "{text}"')

    def caller_presses(self, keys: str) -> None:
        self.note("keypad", f"caller presses {' '.join(keys)}")

    def session_event(self, event: SessionEvent) -> None:
        f = event.fields
        kind = event.type
        if kind == "audio" and f["item_id"] not in self._speaking_items:
            self._speaking_items.add(f["item_id"])
            self.note("agent", "speaking", at=event.at)
        elif kind == "tool_start":
            self.note("tool", f"{f['tool']}({f.get('arguments') or ''}) started", at=event.at)
        elif kind == "tool_end":
            self.note("tool", f"{f['tool']} returned: {f.get('output')}", at=event.at)
        elif kind == "history_added" and f.get("text"):
            who = "agent" if f.get("role") == "assistant" else "caller"
            self.note(who, f'transcript: "{f["text"]}"', at=event.at)
        elif kind == "handoff":
            self.note("agent", f"handoff {f['from_agent']} -> {f['to_agent']}", at=event.at)
        elif kind in ("error", "guardrail_tripped"):
            self.note("error", f"{kind}: {f}", at=event.at)

    def note(self, who: str, text: str, *, at: float | None = None) -> None:
        if self.call is None:  # before the stream started: no call clock yet
            stamp = " " * 8
        else:
            t = (at if at is not None else time.monotonic()) - self._t0
            stamp = f"{t * self.call.caller.clock.speed:7.2f}s"
        line = f"{stamp}  {self._paint(f'{who:<8}', who)}  {text}\n"
        self._clear_status()
        self._write(line)
        self._draw_status()

    def finish(self, summary: list[str], artifacts: list[Path]) -> None:
        self._write("\n" + self._paint("Summary", "step") + "\n")
        for line in summary:
            self._write(f"  {line}\n")
        self._write("\n" + self._paint("Artifacts", "step") + "\n")
        for path in artifacts:
            self._write(f"  {path}\n")

    # --- Terminal -------------------------------------------------------------------------------

    async def _tick(self) -> None:
        """Ten times a second: what Twilio got (clears), and the status line."""
        clears = 0
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                caller = self.call.caller
                for t in caller.clears[clears:]:
                    self.note("barge-in", "the caller talked over the agent: the gateway sent Twilio "
                              "`clear`; the reply is truncated at what was heard",
                              at=caller.clock.to_monotonic(t))
                clears = len(caller.clears)
                self._draw_status()
                await asyncio.sleep(0.1)

    def _status(self) -> str:
        """The status line, at most one column narrower than the terminal (a line that fills
        the last column makes some terminals wrap at once)."""
        columns = shutil.get_terminal_size((80, 24)).columns
        width = max((columns if columns > 0 else 80) - 1, 1)
        call = self.call
        done = self._step / self._steps if self._steps else 0.0
        agent = caller = "·"
        t = 0.0
        if call is not None:
            caller_ = call.caller
            t = caller_.clock.now()
            agent = "▶ speaking" if caller_.playing else "· quiet"
            talking = any(u.start is not None and u.start <= t and (u.end is None or t < u.end)
                          for u in caller_.utterances)
            caller = "▶ speaking" if talking else "· quiet"

        def head(bar_width: int) -> str:  # everything before the step's label
            filled = round(done * bar_width)
            bar = "█" * filled + "░" * (bar_width - filled)
            return f"[{bar}] {self._step}/{self._steps} {t:6.1f}s  agent {agent:<11} caller {caller:<11} "

        # The bar gives way first (down to _MIN_BAR), then the step's label is shortened, and on
        # a very narrow terminal the line is cut.
        label = self._label
        bar_width = max(_MIN_BAR, min(_BAR, _BAR - (len(head(_BAR) + label) - width)))
        room = width - len(head(bar_width))
        if len(label) > room:
            label = label[: room - 1] + "…" if room >= 2 else ""
        text = (head(bar_width) + label).rstrip()
        return text[:width]

    def _draw_status(self) -> None:
        if self.live and self._task is not None and self.call is not None:
            self._write("\r\x1b[2K" + self._paint(self._status(), "gateway"))
            self._status_shown = True

    def _clear_status(self) -> None:
        if self._status_shown:
            self._write("\r\x1b[2K")
            self._status_shown = False

    def _paint(self, text: str, who: str) -> str:
        if not self.colour:
            return text
        return f"\x1b[{_COLOURS.get(who.strip(), '0')}m{text}\x1b[0m"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

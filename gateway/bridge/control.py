"""``CallControl``: what an agent (through the gateway's tools) and the call's timers can do
to the call itself: hang up, transfer to a person, collect keypresses, check in on silence.

The rule for ending or transferring a call is "never mid-sentence": the gateway acts only once
the agent's words have been *heard*, not merely sent. Two facts make that exact:

- The SDK puts a tool's ``tool_start`` event on the session's event queue just before it runs
  the tool function (agents/realtime/session.py, function-tool dispatch), behind every audio
  event of the response that called it. So when the gateway's event consumer reaches that
  ``tool_start``, everything the agent said before calling the tool has been sent to Twilio.
- Twilio echoes a mark once the audio before it has played (see ``Playback``), so "no marks
  pending" means the caller has heard it all.

If the caller talks over the hand-off sentence of a transfer, the transfer waits for the agent
to finish speaking again.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from twilio.twiml.voice_response import Dial, VoiceResponse

from gateway.bridge.timing import DigitCollector, DigitsResult
from gateway.twilio.rest import TwilioRest, TwilioRestError

if TYPE_CHECKING:  # call.py imports this module
    from gateway.bridge.call import Call

log = logging.getLogger("gateway.control")

#: Longest wait for the agent's words to be heard before acting anyway (a stalled stream).
HEARD_TIMEOUT_S = 30.0


def dial_verb(target: str) -> Dial:
    """``<Dial>`` to an E.164 number or a SIP URI."""
    verb = Dial()
    if target.startswith("sip"):
        verb.sip(target)
    else:
        verb.number(target)
    return verb


class CallControl:
    def __init__(self, call: Call, rest: TwilioRest | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.call = call
        self.rest = rest
        self.clock = clock
        self._changed = asyncio.Event()
        # Progress of the gateway's event consumer, for "heard" waits.
        self.tool_starts_seen: collections.Counter[str] = collections.Counter()
        self._tool_entries: collections.Counter[str] = collections.Counter()
        self.responses_started = 0
        self.responses_ended = 0
        self.interruptions = 0
        #: "hang_up" or "transfer" once the call is being ended by the gateway.
        self.ending: str | None = None
        self._collector: DigitCollector | None = None
        self._collected: asyncio.Future[DigitsResult] | None = None

    # --- Fed by the Call ----------------------------------------------------------------------

    def changed(self) -> None:
        """Something waiters may care about happened (event processed, mark echoed, ...)."""
        self._changed.set()

    def tool_started(self, name: str) -> None:
        self.tool_starts_seen[name] += 1
        self.changed()

    def response_started(self) -> None:
        self.responses_started += 1
        self.changed()

    def response_ended(self) -> None:
        self.responses_ended += 1
        self.changed()

    def interrupted(self) -> None:
        self.interruptions += 1
        self.changed()

    def digit(self, digit: str) -> bool:
        """A keypress; True if a collection consumed it (then it is not sent to the model)."""
        if self._collector is None:
            return False
        result = self._collector.feed(digit, self.clock())
        if result is not None:
            self._finish_collection(result)
        return True

    @property
    def collecting(self) -> bool:
        """A keypad collection is waiting for keypresses."""
        return self._collector is not None

    def collection_deadline(self) -> float | None:
        return self._collector.deadline() if self._collector is not None else None

    def tick(self, now: float) -> None:
        """The call's timer: expire a keypad collection whose time is up."""
        if self._collector is not None:
            result = self._collector.expired(now)
            if result is not None:
                self._finish_collection(result)

    # --- Waiting for the agent to have been heard -----------------------------------------------

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = self.clock() + timeout
        while not predicate():
            remaining = deadline - self.clock()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                async with asyncio.timeout(remaining):  # not wait_for: it can swallow a cancel on 3.11
                    await self._changed.wait()
            except TimeoutError:
                return predicate()
        return True

    def quiet(self) -> bool:
        """No response in progress and nothing sent still unheard."""
        return self.responses_started == self.responses_ended and not self.call.playback.speaking

    async def _tool_words_heard(self, tool: str, *, until_uninterrupted: bool) -> bool:
        """Wait until what the agent said before calling ``tool`` has been heard.

        With ``until_uninterrupted``, a barge-in during the wait means the sentence was cut: wait
        for the agent to speak again and be heard out, with no barge-in.
        """
        self._tool_entries[tool] += 1
        entry = self._tool_entries[tool]
        deadline = self.clock() + HEARD_TIMEOUT_S
        if not await self.wait_until(lambda: self.tool_starts_seen[tool] >= entry, HEARD_TIMEOUT_S):
            return False
        while True:
            interruptions, started = self.interruptions, self.responses_started
            if not await self.wait_until(self.quiet, max(0.0, deadline - self.clock())):
                return False
            if not until_uninterrupted or self.interruptions == interruptions:
                return True
            # Cut off mid-sentence: wait for the agent's next response, then for it to be heard.
            log.info("%s the hand-off was interrupted; waiting for the agent to finish again", self.call.log_prefix)
            if not await self.wait_until(lambda: self.responses_started > started, max(0.0, deadline - self.clock())):
                return True  # the agent has nothing more to say: not mid-sentence either

    async def heard_out_after(self, responses_before: int, timeout: float = HEARD_TIMEOUT_S) -> bool:
        """Wait for a response started after ``responses_before`` to end and be heard."""
        return await self.wait_until(lambda: self.responses_started > responses_before and self.quiet(), timeout)

    # --- Actions ------------------------------------------------------------------------------

    async def hang_up(self, *, reason: str = "agent", after_tool: str | None = "hang_up") -> str:
        """End the call once the agent's goodbye has been heard."""
        if self.ending is not None:
            return f"The call is already ending ({self.ending})."
        self.ending = "hang_up"
        if after_tool is not None:
            heard = await self._tool_words_heard(after_tool, until_uninterrupted=False)
            if not heard:
                log.warning("%s hanging up without confirmation that the goodbye was heard", self.call.log_prefix)
        self.call.note_control("hang_up", reason=reason)
        await self._end_call_via_twilio(reason)
        return "The call has ended."

    async def transfer(self, target: str) -> str:
        dial = self.call.settings.transfer_target(target)
        if dial is None:
            allowed = ", ".join(name for name, _ in self.call.settings.transfer_targets) or "none"
            self.call.note_control("transfer_refused", target=target)
            log.warning("%s transfer to %r refused: not an allowed target", self.call.log_prefix, target)
            return f"Transfer refused: {target!r} is not an allowed target. Allowed: {allowed}."
        if self.ending is not None:
            return f"The call is already ending ({self.ending})."
        self.ending = "transfer"
        await self._tool_words_heard("transfer_call", until_uninterrupted=True)
        response = VoiceResponse()
        response.append(dial_verb(dial))
        self.call.note_control("transfer", target=dial)
        self.call.mark_transferred()
        log.info("%s transferring to %s", self.call.log_prefix, dial)
        if self.rest is None or not await self._rest("redirect", self.call.call_sid, str(response)):
            await self.call.end_stream()  # no live call to redirect: at least end the stream
        return f"Transferring the caller to {target}."

    async def collect_digits(self, count: int | None, terminator: str | None, timeout_s: float) -> DigitsResult:
        if self._collected is not None and not self._collected.done():
            raise RuntimeError("already collecting keypresses")
        self._collector = DigitCollector(count, terminator, timeout_s, self.clock())
        self._collected = asyncio.get_running_loop().create_future()
        self.changed()  # the timer now has a deadline to watch
        return await self._collected

    def _finish_collection(self, result: DigitsResult) -> None:
        self._collector = None
        if self._collected is not None and not self._collected.done():
            self._collected.set_result(result)

    async def _end_call_via_twilio(self, reason: str) -> None:
        self.call.mark_hung_up(reason)
        # Twilio ends the call and then closes the stream (stop). If REST is not reachable,
        # closing the stream ends <Connect>; with nothing after it in the TwiML, Twilio hangs up.
        if self.rest is None or not await self._rest("hang_up", self.call.call_sid):
            await self.call.end_stream()

    async def _rest(self, method: str, *args: str) -> bool:
        """Call Twilio REST; True if it took effect on a live call. A call already gone (20404)
        is not an error, but there is then no Twilio to close the stream: False."""
        try:
            done = await getattr(self.rest, method)(*args)
        except TwilioRestError as exc:
            log.error("%s Twilio REST %s failed: %s", self.call.log_prefix, method, exc)
            return False
        except Exception as exc:  # network down, DNS, TLS: the call must still end
            log.error("%s Twilio REST %s failed: %s: %s", self.call.log_prefix, method, type(exc).__name__, exc)
            return False
        if not done:
            log.info("%s Twilio says the call is already gone (20404)", self.call.log_prefix)
        return bool(done)

"""Twilio's callbacks for a call, carried to the instance that holds the call's stream.

A callback (status, answering-machine result) is signed by Twilio and may land on any instance.
Where it is handled:

1. **here**, if this instance holds the call's stream;
2. else **at the holder**, if this instance is the call's home and the holder told it where it
   is (``POST /internal/v1/held``, sent by the holder when the stream starts);
3. else **at the home** the callback URL's signed hint names (``gateway.web.peers``), which
   then does 1 or 2;
4. else **at a sibling worker** that holds it (``gateway serve --workers N``: each is asked,
   and takes it only if it holds the call). This finds the holder when the home does not know
   it: a home that died, or was replaced and forgot;
5. else **here, kept**: a result that came before its stream started waits for it (the holder
   collects it from the home when it registers), and one for a call that has ended is noted
   and dropped.

A forwarded callback travels at most ``MAX_HOPS`` times (landing instance, home, holder), and
a sibling asked in step 4 never forwards. An instance that cannot be reached is passed over
with a warning: a holder that died took its calls with it, and a home that died is skipped for
what it would only have relayed. Across machines, a callback that lands elsewhere while its
home is gone is kept where it landed (the holder is not found): docs/deploy.md. Twilio always
gets its answer from the instance it reached (204), in well under its 15 s timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Literal

from gateway.web.peers import Peers
from gateway.web.registry import CallRegistry

__all__ = ["CallRouter", "CallbackKind", "MAX_HOPS"]

log = logging.getLogger("gateway.app")

CallbackKind = Literal["status", "amd"]
#: Landing instance to home, home to holder.
MAX_HOPS = 2
#: A sibling's answer when asked to take a callback only if it holds the call, and it does not.
NOT_HERE = "not here"
#: Where a holder registers with a call's home, and a forwarded callback goes.
HELD_PATH = "/internal/v1/held"
CALLBACK_PATH = "/internal/v1/callback"


class CallRouter:
    def __init__(self, registry: CallRegistry, peers: Peers) -> None:
        self.registry = registry
        self.peers = peers

    async def callback(self, kind: CallbackKind, form: Mapping[str, str], hint: str | None = None, hops: int = 0,
                       only_if_held: bool = False) -> str:
        """Handle or forward a callback (its form already checked); says where it went, for the
        log and for the instance that forwarded it. ``only_if_held``: a sibling asks; take it
        only if the call is held here (else ``NOT_HERE``)."""
        call_sid = form["CallSid"]
        if self.registry.find(call_sid) is not None:
            return self.apply(kind, form)
        if only_if_held:
            return NOT_HERE
        holder = self.registry.held_elsewhere.get(call_sid)
        if holder is not None and hops < MAX_HOPS:
            answer = await self.forward(holder, kind, form, hops + 1)
            if answer is not None:
                return f"forwarded to its holder {holder}: {answer}"
            log.warning("[call=%s] its holder %s is gone, and its calls with it: %s callback kept here",
                        call_sid, holder, kind)
            return self.apply(kind, form)
        if hint and hops == 0:
            home = self.peers.hinted(hint)
            if home is None:
                log.warning("[call=%s] %s callback with an owner hint this deployment did not sign: "
                            "handled here, not forwarded", call_sid, kind)
            elif not self.peers.is_me(home):
                answer = await self.forward(home, kind, form, hops + 1)
                if answer is not None:
                    return f"forwarded to its home {home}: {answer}"
                log.warning("[call=%s] its home %s could not be reached", call_sid, home)
        if hops < MAX_HOPS:  # the holder itself (reached from the home) has no one left to ask
            siblings = self.peers.siblings
            answers = await asyncio.gather(*(self.forward(url, kind, form, MAX_HOPS, only_if_held=True)
                                             for url in siblings))
            for sibling, answer in zip(siblings, answers):
                if answer is not None and answer != NOT_HERE:
                    return f"forwarded to its holder {sibling}: {answer}"
        return self.apply(kind, form)

    def apply(self, kind: CallbackKind, form: Mapping[str, str]) -> str:
        """The callback, here: to the call if it is in progress, else kept (or dropped if the
        call has ended)."""
        call_sid = form["CallSid"]
        if kind == "status":
            return self.registry.twilio_status(call_sid, form["CallStatus"], form.get("CallDuration"))
        return self.registry.answered_by(call_sid, form["AnsweredBy"])

    async def forward(self, url: str, kind: CallbackKind, form: Mapping[str, str], hops: int,
                      only_if_held: bool = False) -> str | None:
        """To another instance; what it did with it, or None if it could not be reached."""
        payload = {"kind": kind, "form": dict(form), "hops": hops, "only_if_held": only_if_held}
        answer = await self.peers.post(url, CALLBACK_PATH, payload)
        if not isinstance(answer, dict):
            return None
        return str(answer.get("outcome", "?"))

    # --- The holder and the home --------------------------------------------------------------------

    async def register(self, call_sid: str, home: str) -> None:
        """This instance holds ``call_sid``'s stream, whose home is ``home``: tell it, and take
        what it kept for the call (an answering-machine result that came first)."""
        if self.peers.instance_url is None or self.peers.is_me(home):
            return
        answer = await self.peers.post(home, HELD_PATH, {"call_sid": call_sid, "holder": self.peers.instance_url})
        if answer is None:
            log.warning("[call=%s] could not tell its home %s that this instance holds it: callbacks that "
                        "land elsewhere may not reach it", call_sid, home)
            return
        answered_by = answer.get("answered_by") if isinstance(answer, dict) else None
        if isinstance(answered_by, str) and answered_by:
            self.registry.answered_by(call_sid, answered_by)

    def held(self, call_sid: str, holder: str) -> dict[str, str | None]:
        """At the home: ``holder`` holds ``call_sid``'s stream. Hands over what was kept for it."""
        self.registry.held_elsewhere[call_sid] = holder
        self.registry.held_elsewhere.move_to_end(call_sid)
        self.registry.trim(self.registry.held_elsewhere)
        return {"answered_by": self.registry.early_amd.pop(call_sid, None)}

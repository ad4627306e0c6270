"""The calls in progress on every instance: this one's, gathered with the others'; and an
operator's hang-up, carried to whichever instance holds the call.

Who the others are: this instance's sibling workers (``gateway serve --workers N``), and every
instance that announces itself in the shared call store (``CallStore.announce``, every
``ANNOUNCE_EVERY_S``; one not seen for ``STALE_S`` is left out, and one that shuts down
withdraws). The store is PostgreSQL across machines, or the SQLite file the workers of one
machine share. A lone instance (no ``GATEWAY_INSTANCE_URL``) lists its own calls only.

Each is asked ``GET /internal/v1/calls`` (signed), all at once, with a short timeout: an
instance that does not answer is named in ``unreachable``, and the list goes on without it.
Nothing here touches a call; the store is read and written from threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from gateway.store import CallStore
from gateway.web.peers import Peers
from gateway.web.registry import CallRegistry

__all__ = ["ANNOUNCE_EVERY_S", "CALLS_PATH", "Fleet", "HANGUP_PATH", "STALE_S"]

log = logging.getLogger("gateway.app")

ANNOUNCE_EVERY_S = 10.0
STALE_S = 3 * ANNOUNCE_EVERY_S
CALLS_PATH = "/internal/v1/calls"
HANGUP_PATH = "/internal/v1/hangup"


class Fleet:
    def __init__(self, registry: CallRegistry, peers: Peers, store: CallStore | None) -> None:
        self.registry = registry
        self.peers = peers
        self.store = store
        self._store_failing = False

    def own(self, now: float) -> list[dict[str, object]]:
        """This instance's calls in progress, each naming the instance."""
        me = self.peers.instance_url
        return [{**call, "instance": me} for call in self.registry.in_progress(now)] if me else \
            self.registry.in_progress(now)

    async def live(self, now: float | None = None) -> dict[str, Any]:
        """``{"calls": [...], "instances": n, "unreachable": [...]}``: every instance's calls in
        progress (``CallRegistry.in_progress``, plus ``instance``), this one's first."""
        now = time.time() if now is None else now
        calls = self.own(now)
        others = await self.others(now)
        answers = await asyncio.gather(*(self.peers.get(url, CALLS_PATH) for url in others))
        unreachable = []
        for url, answer in zip(others, answers):
            try:
                theirs = json.loads(answer) if answer is not None else None
            except ValueError:
                theirs = None
            if not isinstance(theirs, list):
                unreachable.append(url)
                continue
            calls.extend(call for call in theirs if isinstance(call, dict))
        return {"calls": calls, "instances": 1 + len(others) - len(unreachable), "unreachable": unreachable}

    def hang_up_here(self, call_sid: str) -> bool:
        """End ``call_sid`` now if this instance holds it (``CallControl.end_now``)."""
        call = self.registry.find(call_sid)
        if call is None:
            return False
        call.log.warning("an operator is ending the call")
        call.control.end_now()
        return True

    async def hang_up(self, call_sid: str) -> str | None:
        """End ``call_sid`` now, wherever it is: the instance holding it (its URL, or
        ``"here"`` for a lone instance), or None if no instance that answered holds it."""
        if self.hang_up_here(call_sid):
            return self.peers.instance_url or "here"
        others = await self.others(time.time())
        answers = await asyncio.gather(*(self.peers.post(url, HANGUP_PATH, {"call_sid": call_sid}) for url in others))
        for url, answer in zip(others, answers):
            if isinstance(answer, dict) and answer.get("held") is True:
                return url
        return None

    async def others(self, now: float) -> list[str]:
        """The other instances: the siblings, and those the store saw lately."""
        urls = dict.fromkeys(self.peers.siblings)
        if self.store is not None and self.peers.instance_url is not None:
            try:
                seen = await asyncio.to_thread(self.store.instances, now - STALE_S)
            except Exception as exc:  # the database is away: the siblings still answer
                log.warning("cannot read the instances from the store (%s): listing this machine's only", exc)
                seen = []
            urls.update(dict.fromkeys(seen))
        urls.pop(self.peers.instance_url, None)
        return list(urls)

    async def announce_forever(self) -> None:
        """For the gateway's life: tell the store this instance is alive (nothing without an
        instance URL or a store). A failing store is logged once, and once when it is back."""
        if self.store is None or self.peers.instance_url is None:
            return
        while True:
            await self.announce()
            await asyncio.sleep(ANNOUNCE_EVERY_S)

    async def announce(self) -> None:
        assert self.store is not None and self.peers.instance_url is not None
        try:
            await asyncio.to_thread(self.store.announce, self.peers.instance_url, time.time())
        except Exception as exc:
            if not self._store_failing:
                log.warning("cannot announce this instance in the store (%s): other instances will not list "
                            "its calls until it can", exc)
            self._store_failing = True
            return
        if self._store_failing:
            log.warning("announcing this instance in the store again")
        self._store_failing = False

    async def withdraw(self) -> None:
        """At shutdown: this instance is gone (best effort)."""
        if self.store is None or self.peers.instance_url is None:
            return
        try:
            await asyncio.to_thread(self.store.withdraw, self.peers.instance_url)
        except Exception as exc:
            log.info("could not withdraw this instance from the store (%s): it goes stale in %.0f s", exc, STALE_S)

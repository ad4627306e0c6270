"""The benchmark's agent: the gateway's built-in phone assistant, tagged with the call.

``GATEWAY_AGENT=bench.agent:for_call`` (set by ``bench/load.py``). The agent is the one the
gateway answers with by default (``gateway.bridge.agents.default_agent`` with the default
instructions), plus ``bench-call=<CallSid>`` at the end of its instructions. The SDK sends the
instructions in its ``session.update``, so the Realtime server can tell which phone call each
of its connections carries, and the benchmark can follow every frame from one end to the
other. Building an agent per call is what any deployment with a ``GATEWAY_AGENT`` factory
does; it costs microseconds.
"""

from __future__ import annotations

from agents.realtime import RealtimeAgent

from gateway.bridge.agents import CallInfo, default_agent
from gateway.settings import Settings


def tag(call_sid: str) -> str:
    return f"bench-call={call_sid}"


def for_call(info: CallInfo) -> RealtimeAgent:
    agent = default_agent(f"{Settings.instructions}\n\n({tag(info.call_sid)})")
    return agent

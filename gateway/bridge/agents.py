"""Which agent answers a call: ``GATEWAY_AGENT`` or the built-in phone assistant."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Union

from agents.realtime import RealtimeAgent


@dataclasses.dataclass(frozen=True)
class CallInfo:
    """What we know about a call when it starts; passed to agent factories and kept as the
    SDK run context (tools see it as ``ctx.context``)."""

    call_sid: str
    stream_sid: str
    account_sid: str
    from_: str
    to: str
    #: Every ``<Parameter>`` of the stream (our token included).
    parameters: Mapping[str, str]
    @property
    def context(self) -> dict[str, str]:
        """Context given when the call was placed (``gateway call --context key=value``)."""
        return {k[4:]: v for k, v in self.parameters.items() if k.startswith("ctx.")}

    #: The live call's ``CallControl`` (hang up, transfer, keypad); used by ``gateway.tools``.
    control: Any = dataclasses.field(default=None, compare=False, repr=False)


AgentFactory = Callable[[CallInfo], Union[RealtimeAgent, Awaitable[RealtimeAgent]]]
AgentSource = Union[RealtimeAgent, AgentFactory]


def default_agent(instructions: str) -> RealtimeAgent:
    return RealtimeAgent(name="Phone assistant", instructions=instructions)


def load_agent_source(spec: str) -> AgentSource:
    """Import ``package.module:attribute`` (checked at start, so a typo fails then)."""
    module_name, _, attribute = spec.partition(":")
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"GATEWAY_AGENT: cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise ValueError(f"GATEWAY_AGENT: {module_name!r} has no attribute {attribute!r}") from exc
    if not isinstance(target, RealtimeAgent) and not callable(target):
        raise ValueError(
            f"GATEWAY_AGENT: {spec} is a {type(target).__name__}, expected a RealtimeAgent or a "
            "factory taking CallInfo"
        )
    return target


async def agent_for_call(source: AgentSource, info: CallInfo) -> RealtimeAgent:
    if isinstance(source, RealtimeAgent):
        return source
    agent = source(info)
    if inspect.isawaitable(agent):
        agent = await agent
    if not isinstance(agent, RealtimeAgent):
        raise TypeError(f"agent factory returned {type(agent).__name__}, expected a RealtimeAgent")
    return agent

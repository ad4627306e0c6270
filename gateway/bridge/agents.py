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


#: Set on a tool's invoker once guarded, so that a tool shared by many calls and agents is
#: wrapped once.
_GUARDED = "__gateway_guarded_tool__"
#: What the model hears when a tool fails: enough to tell the caller, nothing to retry blindly.
TOOL_FAILED = "The tool {name} failed ({error}). Tell the caller it could not be done right now."
TOOL_TIMED_OUT = ("The tool {name} did not finish within {seconds:g} s and was stopped. Tell the "
                  "caller it could not be done right now.")


def tool_outcome(output: str) -> str:
    """``ok``, ``error`` or ``timeout``, from the output the model was given: the failure texts
    above (``TOOL_TIMED_OUT``, ``TOOL_FAILED``) and the SDK's default one (agents/tool.py,
    ``default_tool_error_function``)."""
    if output.startswith("The tool ") and " did not finish within " in output:
        return "timeout"
    if (output.startswith("The tool ") and " failed (" in output) or output.startswith("An error occurred"):
        return "error"
    return "ok"


def guard_tools(agent: RealtimeAgent, timeout_s: float, *, exempt: frozenset[str] = frozenset(),
                log: Any = None) -> None:
    """Make the function tools of ``agent`` (and of the agents it hands off to) safe for a
    live call: a tool that raises returns its error to the model as the tool's result, and one
    that runs past ``timeout_s`` (0: no limit) returns a timeout error instead, so the call
    goes on either way. Tools named in ``exempt`` (the gateway's own, which keep their own
    time) and tools with their own SDK ``timeout_seconds`` keep their timing.

    The SDK applies ``timeout_seconds`` only to async tools (agents/tool.py); a sync tool runs
    in a worker thread, which a timeout abandons rather than stops.
    """
    from agents import FunctionTool

    seen: set[int] = set()
    pending = [agent]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for tool in current.tools:
            if isinstance(tool, FunctionTool) and not getattr(tool.on_invoke_tool, _GUARDED, False):
                limit = None if tool.name in exempt or tool.timeout_seconds else (timeout_s or None)
                tool.on_invoke_tool = _guarded(tool.name, tool.on_invoke_tool, limit, log)
        pending.extend(h for h in current.handoffs if isinstance(h, RealtimeAgent))


def _guarded(name: str, invoke: Callable[..., Awaitable[Any]], timeout_s: float | None, log: Any):
    import asyncio
    import logging

    logger = log or logging.getLogger("gateway.tools")

    async def guarded(ctx: Any, arguments: str) -> Any:
        try:
            if timeout_s is None:
                return await invoke(ctx, arguments)
            async with asyncio.timeout(timeout_s):
                return await invoke(ctx, arguments)
        except TimeoutError:
            logger.warning("tool %s timed out after %g s; the model is told", name, timeout_s)
            return TOOL_TIMED_OUT.format(name=name, seconds=timeout_s)
        except Exception as exc:
            logger.warning("tool %s raised %s: %s; the model is told", name, type(exc).__name__, exc)
            return TOOL_FAILED.format(name=name, error=f"{type(exc).__name__}: {exc}")

    setattr(guarded, _GUARDED, True)
    return guarded

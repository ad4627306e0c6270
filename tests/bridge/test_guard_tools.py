"""guard_tools: a tool that raises or hangs answers the model instead of stalling the call."""

from __future__ import annotations

import asyncio

from agents import function_tool
from agents.realtime import RealtimeAgent
from agents.tool_context import ToolContext

from gateway.bridge.agents import guard_tools


@function_tool(failure_error_function=None)  # the author opted out of the SDK's own catch
async def broken(order: str) -> str:
    """Broken."""
    raise RuntimeError("database unavailable")


@function_tool
async def slow(order: str) -> str:
    """Slow."""
    await asyncio.sleep(60)
    return "late"


@function_tool
async def hang_up() -> str:
    """Exempt, like the gateway's own."""
    await asyncio.sleep(0.2)
    return "ended"


def context(name: str) -> ToolContext:
    return ToolContext(context=None, tool_name=name, tool_call_id="call_1", tool_arguments="{}")


async def test_errors_and_timeouts_become_results_and_exempt_tools_keep_their_time() -> None:
    specialist = RealtimeAgent(name="b", instructions="", tools=[slow])
    agent = RealtimeAgent(name="a", instructions="", tools=[broken, hang_up], handoffs=[specialist])
    guard_tools(agent, 0.05, exempt=frozenset({"hang_up"}))
    guard_tools(agent, 0.05, exempt=frozenset({"hang_up"}))  # idempotent: wrapped once
    failed = await broken.on_invoke_tool(context("broken"), '{"order": "1"}')
    assert "broken failed" in failed and "RuntimeError: database unavailable" in failed
    late = await slow.on_invoke_tool(context("slow"), '{"order": "1"}')  # via the handoff
    assert "did not finish within 0.05 s" in late
    assert await hang_up.on_invoke_tool(context("hang_up"), "{}") == "ended"  # 0.2 s, not cut


"""Tools the gateway gives agents, opt-in per agent::

    from gateway.tools import collect_digits, hang_up, transfer_call

    agent = RealtimeAgent(name="Support", instructions="...", tools=[hang_up, transfer_call])

Each acts on the live phone call through the run context (``CallInfo.control``), so they work
only for agents running inside the gateway. The rule for ending or transferring a call is
"never mid-sentence": both wait until what the agent said before calling them has been heard
by the caller (Twilio mark echoes), see ``gateway.bridge.control``.
"""

from __future__ import annotations

from agents import RunContextWrapper, function_tool

from gateway.bridge.agents import CallInfo
from gateway.bridge.control import CallControl


def _control(ctx: RunContextWrapper[CallInfo]) -> CallControl:
    control = getattr(ctx.context, "control", None)
    if control is None:
        raise RuntimeError("this tool only works for agents answering calls through the gateway")
    return control


@function_tool
async def hang_up(ctx: RunContextWrapper[CallInfo]) -> str:
    """End the phone call. Say a short goodbye first: the call ends once the caller has heard it."""
    return await _control(ctx).hang_up()


@function_tool
async def transfer_call(ctx: RunContextWrapper[CallInfo], target: str) -> str:
    """Transfer the caller to a person. First tell the caller you are transferring them; the
    transfer happens once they have heard you. ``target`` is the name of an allowed
    destination (for example "sales"); anything else is refused."""
    return await _control(ctx).transfer(target)


@function_tool
async def collect_digits(
    ctx: RunContextWrapper[CallInfo], count: int | None = None, terminator: str | None = "#", timeout_s: float = 8.0
) -> str:
    """Collect keypad digits from the caller, for a menu choice or a PIN. First ask them to
    enter the digits. Ends after ``count`` digits, when the caller presses ``terminator``
    (default #, not included), or ``timeout_s`` seconds after the last keypress."""
    result = await _control(ctx).collect_digits(count, terminator, timeout_s)
    if not result.digits:
        return "The caller pressed no keys."
    return f"The caller entered {result.digits} (ended by {result.ended_by})."

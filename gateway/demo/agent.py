"""The demo's agent, Ava at Acme Outfitters, and the script the local model plays for it.

Offline, the local Realtime server speaks Ava's lines from the recorded clips and calls her
tools in the order a real model would for this conversation; the tools themselves run for real
in the gateway (the order lookup below, and the gateway's ``collect_digits`` and ``hang_up``).
With ``gateway demo --real`` the same agent talks to OpenAI's model instead, which decides for
itself from the instructions.
"""

from __future__ import annotations

import re

from agents import function_tool
from agents.realtime import RealtimeAgent

from gateway.demo import clips
from gateway.testing.realtime.connection import RealtimeConnection
from gateway.testing.realtime.script import Reply, Script, ToolCall, Trigger, Turn
from gateway.tools import collect_digits, hang_up

#: The demo's order book: order number -> status.
ORDERS = {
    "4271": "shipped yesterday; arrives Tuesday",
    "1024": "being packed; ships tomorrow",
}


@function_tool
def lookup_order(order_number: str) -> str:
    """Look up the shipping status of an order by its number."""
    status = ORDERS.get(order_number.strip())
    if status is None:
        return f"No order {order_number} was found."
    return f"Order {order_number}: {status}."


INSTRUCTIONS = """You are Ava, the friendly phone agent of Acme Outfitters, an outdoor gear shop.
Keep answers short: this is a phone call. When a caller asks about an order, ask them to type
the order number on their keypad followed by the pound key, call collect_digits to receive it,
then call lookup_order with those digits and tell them the status. When the caller has nothing
else, say a short goodbye and call hang_up."""


def demo_agent() -> RealtimeAgent:
    return RealtimeAgent(
        name="Ava",
        instructions=INSTRUCTIONS,
        tools=[collect_digits, lookup_order, hang_up],
    )


def _say(name: str) -> Reply:
    clip = clips.load(name)
    return Reply(clip.text, audio=clip.pcm16(24000))


def demo_script() -> Script:
    """What the local model says, turn by turn (the order lookup is decided in ``on_turn``)."""
    return Script(
        [
            _say("agent_greeting"),  # the greeting the gateway asks for
            _say("agent_explains"),  # the caller's question; the caller cuts this one short
            (_say("agent_ask_digits"), ToolCall("collect_digits", {"count": None, "terminator": "#"})),
            # (the lookup: on_turn below, with the digits the caller typed)
            _say("agent_order_status"),
            (_say("agent_goodbye"), ToolCall("hang_up")),  # after "no, that's all"
        ],
        default=_say("agent_sorry"),
    )


_ENTERED = re.compile(r"entered (\d+)")


def on_turn(conn: RealtimeConnection, trigger: Trigger) -> Turn | None:
    """Right after ``collect_digits`` returns, look up the order the caller typed: the model's
    one decision that depends on what happened in the call."""
    if trigger.source != "response.create" or not conn.function_call_outputs:
        return None
    last = conn.function_call_outputs[-1]
    found = _ENTERED.search(last.output)
    already = any(r.turn is not None and isinstance(r.turn, ToolCall) and r.turn.name == "lookup_order"
                  for r in conn.responses)
    if found and not already:
        return ToolCall("lookup_order", {"order_number": found.group(1)})
    return None

"""Local peers for testing without accounts or network (see each module's docstring)."""

from gateway.testing.realtime_server import (
    Heard,
    RealtimeConnection,
    RealtimeServer,
    Reply,
    Script,
    ToolCall,
    When,
)

__all__ = [
    "Heard",
    "RealtimeConnection",
    "RealtimeServer",
    "Reply",
    "Script",
    "ToolCall",
    "When",
]

# The local fake of Twilio's REST API and call behaviour (see gateway.testing.twilio_api).
from gateway.testing.twilio_api import FakeCall, FakeTwilio  # noqa: E402

__all__ += ["FakeCall", "FakeTwilio"]

# The call-flow test kit (see gateway.testing.phone and docs/testing.md).
from gateway.testing.phone import AgentSpeech, PhoneCall, PhoneSystem, ToolUse  # noqa: E402

__all__ += ["AgentSpeech", "PhoneCall", "PhoneSystem", "ToolUse"]

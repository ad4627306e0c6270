"""Local peers for testing without accounts or network, and the call-flow test kit on top.

Each peer is a package whose docstring is its manual:

- ``gateway.testing.realtime``: a local OpenAI Realtime server (``RealtimeServer``, and the
  script the model follows: ``Reply``, ``ToolCall``, ``Heard``, ``When``, ``Script``);
- ``gateway.testing.caller``: Twilio's side of a Media Streams call (``TwilioCaller``);
- ``gateway.testing.twilio_api``: a fake of Twilio's REST API and call behaviour
  (``FakeTwilio``, ``FakeCall``);
- ``gateway.testing.gateway_server``: the gateway app under uvicorn on a free port.

The call-flow kit, ``gateway.testing.phone`` (``PhoneSystem``, ``PhoneCall``; see
docs/testing.md), and its pytest plugin, ``gateway.testing.pytest_plugin`` (the
``phone_system`` fixture), put them together.

The names below are imported on first use: importing this package costs nothing (the plugin
does, in every pytest run where the package is installed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.testing._lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.testing.caller import TwilioCaller
    from gateway.testing.phone import AgentSpeech, PhoneCall, PhoneSystem, ToolUse
    from gateway.testing.realtime import (
        Heard,
        RealtimeConnection,
        RealtimeServer,
        Reply,
        Script,
        ToolCall,
        When,
    )
    from gateway.testing.twilio_api import FakeCall, FakeTwilio

__all__ = [
    "AgentSpeech",
    "FakeCall",
    "FakeTwilio",
    "Heard",
    "PhoneCall",
    "PhoneSystem",
    "RealtimeConnection",
    "RealtimeServer",
    "Reply",
    "Script",
    "ToolCall",
    "ToolUse",
    "TwilioCaller",
    "When",
]

# Each public name and its module, imported on first use (see gateway.testing._lazy).
__getattr__, __dir__ = lazy_exports(globals(), {
    "TwilioCaller": ".caller",
    "AgentSpeech": ".phone",
    "PhoneCall": ".phone",
    "PhoneSystem": ".phone",
    "ToolUse": ".phone",
    "Heard": ".realtime",
    "RealtimeConnection": ".realtime",
    "RealtimeServer": ".realtime",
    "Reply": ".realtime",
    "Script": ".realtime",
    "ToolCall": ".realtime",
    "When": ".realtime",
    "FakeCall": ".twilio_api",
    "FakeTwilio": ".twilio_api",
})

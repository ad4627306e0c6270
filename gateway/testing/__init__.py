"""Local peers for testing without accounts or network (see each module's docstring)."""

from gateway.testing.realtime_server import (
    Heard,
    RealtimeConnection,
    RealtimeServer,
    Reply,
    Script,
    ToolCall,
)

__all__ = [
    "Heard",
    "RealtimeConnection",
    "RealtimeServer",
    "Reply",
    "Script",
    "ToolCall",
]

"""The wire: validating what the server sends and what clients send.

Every server event is checked against ``openai.types.realtime.RealtimeServerEvent`` with the
same discriminated ``TypeAdapter`` the SDK uses (``agents/realtime/openai_realtime.py``). An
event that fails there becomes an ``error`` session event in the SDK, so for this server it is
a bug: ``validate_server_event`` raises ``InvalidServerEvent``. It is also stricter than the SDK
in one way: the openai models accept unknown fields (``extra="allow"``), and a misspelt or
stray field can change SDK behaviour (an ``audio_end_ms`` on ``speech_started`` overrides the
playback tracker), so unknown fields are rejected too, except the few the real API really sends
beyond the published types (``session.id``, ``session.object``, ``session.expires_at``).

Client events are checked against ``RealtimeClientEvent`` the same way; a bad one gets the
``error`` event the real API would send (``invalid_request_error``), and the connection stays
open.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

import pydantic
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent, RealtimeSessionCreateRequest
from pydantic import BaseModel, Field, TypeAdapter

__all__ = [
    "CLIENT_EVENT_TYPES",
    "ClientEventError",
    "InvalidServerEvent",
    "error_event",
    "parse_client_event",
    "validate_server_event",
    "validate_session",
]

_SERVER_EVENTS: TypeAdapter[Any] = TypeAdapter(Annotated[RealtimeServerEvent, Field(discriminator="type")])
_CLIENT_EVENTS: TypeAdapter[Any] = TypeAdapter(Annotated[RealtimeClientEvent, Field(discriminator="type")])
_SESSION: TypeAdapter[Any] = TypeAdapter(RealtimeSessionCreateRequest)
_ALLOWED_EXTRA = frozenset({"session.id", "session.object", "session.expires_at"})


class InvalidServerEvent(ValueError):
    """The server was about to send an event the SDK would reject: a bug in the server or in
    a test's ``emit``."""

    def __init__(self, event: Mapping[str, Any], problem: str) -> None:
        self.event = dict(event)
        super().__init__(f"invalid server event {event.get('type')!r}: {problem}")


class ClientEventError(ValueError):
    """A client event the real API would refuse, with the fields of its ``error`` event."""

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 event_id: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param, self.event_id = message, code, param, event_id


def _extras(value: Any, path: str) -> Iterator[str]:
    """Paths of the fields no model declares, anywhere in a validated value."""
    if isinstance(value, BaseModel):
        for key in value.model_extra or {}:
            yield f"{path}.{key}".lstrip(".")
        for key in type(value).model_fields:
            yield from _extras(getattr(value, key), f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _extras(item, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _extras(item, f"{path}.{key}")


def _describe(error: pydantic.ValidationError) -> str:
    parts = []
    for e in error.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"][1:]) or "event"  # loc[0] is the union tag
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def validate_server_event(event: Mapping[str, Any]) -> None:
    """Raise ``InvalidServerEvent`` unless the SDK would accept ``event`` exactly as it is."""
    try:
        parsed = _SERVER_EVENTS.validate_python(dict(event))
    except pydantic.ValidationError as e:
        raise InvalidServerEvent(event, _describe(e)) from e
    unknown = [p for p in _extras(parsed, "") if p not in _ALLOWED_EXTRA]
    if unknown:
        raise InvalidServerEvent(event, f"unknown field(s) {', '.join(unknown)}")


def validate_session(session: Mapping[str, Any]) -> None:
    """Raise ``ClientEventError`` unless ``session`` is a valid GA realtime session."""
    try:
        parsed = _SESSION.validate_python(dict(session))
    except pydantic.ValidationError as e:
        raise ClientEventError(f"Invalid session: {_describe_session(e)}", code="invalid_value",
                               param="session") from e
    unknown = [p for p in _extras(parsed, "session") if p not in _ALLOWED_EXTRA]
    if unknown:
        raise ClientEventError(f"Unknown parameter: '{unknown[0]}'.", code="unknown_parameter",
                               param=unknown[0])


def _describe_session(error: pydantic.ValidationError) -> str:
    e = error.errors()[0]
    return f"session.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}"


def parse_client_event(event: Mapping[str, Any]) -> None:
    """Raise ``ClientEventError`` (the real API's wording where known) for an event the API
    would refuse: an unknown type, a missing or mistyped field, an unknown parameter."""
    event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
    kind = event.get("type")
    if not isinstance(kind, str):
        raise ClientEventError("Missing required parameter: 'type'.", code="missing_required_parameter",
                               param="type", event_id=event_id)
    try:
        parsed = _CLIENT_EVENTS.validate_python(dict(event))
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        if first["type"] == "union_tag_invalid":
            raise ClientEventError(f"Invalid value: '{kind}'. Supported values are: "
                                   f"{_supported_types()}.", code="invalid_value", param="type",
                                   event_id=event_id) from e
        param = ".".join(str(x) for x in first["loc"][1:])
        if first["type"] == "missing":
            raise ClientEventError(f"Missing required parameter: '{param}'.",
                                   code="missing_required_parameter", param=param,
                                   event_id=event_id) from e
        raise ClientEventError(f"Invalid value for '{param}': {first['msg']}.", code="invalid_value",
                               param=param, event_id=event_id) from e
    unknown = list(_extras(parsed, ""))
    if unknown:
        raise ClientEventError(f"Unknown parameter: '{unknown[0]}'.", code="unknown_parameter",
                               param=unknown[0], event_id=event_id)


def _event_types(union: Any) -> tuple[str, ...]:
    """The ``type`` literals of an openai event union (``Annotated[Union[...], ...]``)."""
    members = typing.get_args(typing.get_args(union)[0])
    return tuple(t for m in members for t in typing.get_args(m.model_fields["type"].annotation))


CLIENT_EVENT_TYPES = _event_types(RealtimeClientEvent)


def _supported_types() -> str:
    return ", ".join(f"'{t}'" for t in CLIENT_EVENT_TYPES)


def error_event(message: str, *, type: str = "invalid_request_error", code: str | None = None,
                param: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    """An ``error`` server event (without its own ``event_id``; the connection adds one)."""
    return {"type": "error", "error": {"type": type, "code": code, "message": message,
                                       "param": param, "event_id": event_id}}

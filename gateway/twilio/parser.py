"""Strict, total parsers for Twilio Media Streams JSON frames.

``parse_message`` reads what Twilio sends us; ``parse_outbound`` reads what we send Twilio (the
caller simulator, playing Twilio, needs it). Both are *total*: whatever they are given (any
text, any bytes, any size) they return a typed message or raise ``ProtocolError``; no other
exception escapes. Every field a message class holds is checked for presence and type.

Where Twilio is lenient or inconsistent we are tolerant, where a field is essential we are strict:

- ``sequenceNumber``, ``media.chunk``, ``media.timestamp`` are decimal strings on the wire;
  non-negative JSON integers are accepted too. Nothing else (no signs, spaces, floats, bools).
- ``start`` carries its streamSid both inside ``start`` and at the top level; either one is
  enough, but if both are present they must agree.
- ``start.customParameters`` may be absent (no ``<Parameter>`` in the TwiML): empty mapping.
- ``connected.protocol`` / ``connected.version`` are informational: absent means ``""``.
- Track names are not checked against a list: Twilio uses ``"inbound"`` for media and
  ``"inbound_track"`` for DTMF.
- Unknown top-level or nested fields are ignored; an unknown ``event`` gives ``UnknownEvent``.

Size is checked before ``json.loads`` (``max_size`` counts characters for ``str`` input, bytes
for ``bytes`` input); real frames are ~300 bytes.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from typing import Any

from gateway.twilio.errors import ProtocolError
from gateway.twilio.messages import (
    DTMF_DIGITS,
    Clear,
    Connected,
    Dtmf,
    InboundMessage,
    Mark,
    Media,
    MediaFormat,
    OutboundMark,
    OutboundMedia,
    OutboundMessage,
    Start,
    Stop,
    UnknownEvent,
)

__all__ = ["DEFAULT_MAX_SIZE", "parse_message", "parse_outbound"]

DEFAULT_MAX_SIZE = 64 * 1024

_MISSING: Any = object()
_a2b_base64 = binascii.a2b_base64
_loads = json.loads


def parse_message(data: str | bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> InboundMessage:
    """Parse one WebSocket frame from Twilio into a typed message.

    Raises ``ProtocolError`` for anything that is not a valid Twilio message. A well-formed
    object with an unknown ``event`` is returned as ``UnknownEvent``, not an error.
    """
    obj = _load(data, max_size)
    event = _event(obj)
    parse = _INBOUND.get(event)
    if parse is None:
        return UnknownEvent(event, obj)
    return parse(obj)


def parse_outbound(
    data: str | bytes, *, max_size: int = DEFAULT_MAX_SIZE
) -> OutboundMessage | UnknownEvent:
    """Parse one frame we (or a gateway under test) would send to Twilio.

    Same contract as ``parse_message``: typed message, ``UnknownEvent`` for an unknown
    ``event``, or ``ProtocolError``. A payload of any size is legal here (Twilio accepts any
    length of outbound audio), so callers replaying long prompts may raise ``max_size``.
    """
    obj = _load(data, max_size)
    event = _event(obj)
    parse = _OUTBOUND.get(event)
    if parse is None:
        return UnknownEvent(event, obj)
    return parse(obj)


# --- Framing -----------------------------------------------------------------------------------


def _load(data: object, max_size: int) -> dict[str, Any]:
    if isinstance(data, str):
        if len(data) > max_size:
            raise ProtocolError(f"message too large: {len(data)} characters, limit is {max_size}")
        text = data
    elif isinstance(data, (bytes, bytearray, memoryview)):
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if size > max_size:
            raise ProtocolError(f"message too large: {size} bytes, limit is {max_size}")
        try:
            # Decoded here, strictly: json.loads(bytes) would also guess UTF-16/32 and skip a BOM.
            text = str(data, "utf-8")
        except UnicodeDecodeError as exc:
            reason = f"{exc.reason} at byte {exc.start}"
            raise ProtocolError(f"message is not valid UTF-8: {reason}") from None
        except (TypeError, ValueError, BufferError) as exc:  # e.g. a non-contiguous memoryview
            raise ProtocolError(f"message is not a readable byte buffer: {exc}") from None
    else:
        raise ProtocolError(f"message must be str or bytes, not {type(data).__name__}")
    try:
        obj = _loads(text)
    except RecursionError:
        raise ProtocolError("message is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and int() digit limits on huge numbers
        raise ProtocolError(f"message is not valid JSON: {exc}") from None
    if type(obj) is not dict:
        raise ProtocolError(f"message is not a JSON object (got {_json_type(obj)})")
    return obj


def _event(obj: dict[str, Any]) -> str:
    event = obj.get("event", _MISSING)
    if event is _MISSING:
        raise ProtocolError("missing field event")
    if type(event) is not str:
        raise ProtocolError(f"event must be a string, not {_json_type(event)}")
    return event


# --- Field readers -----------------------------------------------------------------------------
# Each reads obj[key], checks its type and raises a ProtocolError naming the field by its wire
# path ("media.payload"). `where` is the path prefix of `obj` ("" for the top level). The error
# text is only built on failure, so the per-field cost on the media path stays small.


def _missing(event: str, where: str, key: str) -> ProtocolError:
    return ProtocolError(f"{event} message: missing field {where}{key}", event)


def _wrong(event: str, where: str, key: str, expected: str, value: object) -> ProtocolError:
    return ProtocolError(
        f"{event} message: {where}{key} must be {expected}, not {_json_type(value)}", event
    )


def _str(obj: dict[str, Any], key: str, event: str, where: str = "") -> str:
    value = obj.get(key, _MISSING)
    if type(value) is str:
        return value
    if value is _MISSING:
        raise _missing(event, where, key)
    raise _wrong(event, where, key, "a string", value)


def _object(obj: dict[str, Any], key: str, event: str, where: str = "") -> dict[str, Any]:
    value = obj.get(key, _MISSING)
    if type(value) is dict:
        return value
    if value is _MISSING:
        raise _missing(event, where, key)
    raise _wrong(event, where, key, "a JSON object", value)


def _uint(obj: dict[str, Any], key: str, event: str, where: str = "") -> int:
    """A non-negative integer sent as a decimal string (Twilio's way) or a JSON integer."""
    value = obj.get(key, _MISSING)
    if type(value) is str:
        # isascii() first: str.isdigit() is also true for "²" or Arabic-Indic digits.
        if value.isascii() and value.isdigit():
            try:
                return int(value)
            except ValueError:  # more digits than sys.get_int_max_str_digits()
                pass
        raise ProtocolError(
            f"{event} message: {where}{key} must be a non-negative decimal integer,"
            f" not {_preview(value)}",
            event,
        )
    if type(value) is int and value >= 0:
        return value
    if value is _MISSING:
        raise _missing(event, where, key)
    raise _wrong(event, where, key, "a non-negative integer or decimal string", value)


def _base64(obj: dict[str, Any], key: str, event: str, where: str) -> bytes:
    value = _str(obj, key, event, where)
    # strict_mode (3.11+) rejects whitespace, foreign characters and missing padding, but before
    # 3.13 it still accepts padding after a complete group ("AAAA==="); the length and "=" checks
    # make every supported version equally strict.
    size = len(value)
    if size % 4 or value.find("=", 0, size - 2) != -1:
        raise ProtocolError(
            f"{event} message: {where}{key} is not valid base64 (bad length or padding)", event
        )
    try:
        return _a2b_base64(value, strict_mode=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII text
        raise ProtocolError(
            f"{event} message: {where}{key} is not valid base64 ({exc})", event
        ) from None


def _stream_sid(obj: dict[str, Any], event: str) -> str:
    return _str(obj, "streamSid", event)


# --- Inbound (Twilio -> us) --------------------------------------------------------------------


def _connected(obj: dict[str, Any]) -> Connected:
    # Informational only: tolerate absence, but not a wrong type.
    protocol = _str(obj, "protocol", "connected") if "protocol" in obj else ""
    version = _str(obj, "version", "connected") if "version" in obj else ""
    return Connected(protocol=protocol, version=version)


def _start(obj: dict[str, Any]) -> Start:
    ev = "start"
    seq = _uint(obj, "sequenceNumber", ev)
    start = _object(obj, "start", ev)
    # streamSid appears both at the top level and inside "start"; accept either, demand agreement.
    outer = _str(obj, "streamSid", ev) if "streamSid" in obj else None
    inner = _str(start, "streamSid", ev, "start.") if "streamSid" in start else None
    if inner is None:
        if outer is None:
            raise _missing(ev, "start.", "streamSid")
        stream_sid = outer
    elif outer is None or outer == inner:
        stream_sid = inner
    else:
        raise ProtocolError(
            f"start message: streamSid {_preview(outer)}"
            f" does not match start.streamSid {_preview(inner)}",
            ev,
        )

    tracks_value = start.get("tracks", _MISSING)
    if tracks_value is _MISSING:
        raise _missing(ev, "start.", "tracks")
    if type(tracks_value) is not list:
        raise _wrong(ev, "start.", "tracks", "an array of strings", tracks_value)
    for track in tracks_value:
        if type(track) is not str:
            raise ProtocolError(
                "start message: start.tracks must contain only strings,"
                f" found {_json_type(track)}",
                ev,
            )

    params: dict[str, Any] = {}
    if "customParameters" in start:  # absent when the TwiML has no <Parameter>
        params = _object(start, "customParameters", ev, "start.")
    for name, value in params.items():
        if type(value) is not str:
            raise ProtocolError(
                f"start message: start.customParameters[{_preview(name)}] must be a string,"
                f" not {_json_type(value)}",
                ev,
            )

    fmt = _object(start, "mediaFormat", ev, "start.")
    media_format = MediaFormat(
        encoding=_str(fmt, "encoding", ev, "start.mediaFormat."),
        sample_rate=_uint(fmt, "sampleRate", ev, "start.mediaFormat."),
        channels=_uint(fmt, "channels", ev, "start.mediaFormat."),
    )
    return Start(
        sequence_number=seq,
        stream_sid=stream_sid,
        account_sid=_str(start, "accountSid", ev, "start."),
        call_sid=_str(start, "callSid", ev, "start."),
        tracks=tuple(tracks_value),
        custom_parameters=params,
        media_format=media_format,
    )


def _media(obj: dict[str, Any]) -> Media:
    # The hot path: 50 per second per call. Keep it to plain field reads.
    media = _object(obj, "media", "media")
    return Media(
        _uint(obj, "sequenceNumber", "media"),
        _str(obj, "streamSid", "media"),
        _str(media, "track", "media", "media."),
        _uint(media, "chunk", "media", "media."),
        _uint(media, "timestamp", "media", "media."),
        _base64(media, "payload", "media", "media."),
    )


def _dtmf(obj: dict[str, Any]) -> Dtmf:
    ev = "dtmf"
    seq = _uint(obj, "sequenceNumber", ev)
    stream_sid = _stream_sid(obj, ev)
    dtmf = _object(obj, "dtmf", ev)
    track = _str(dtmf, "track", ev, "dtmf.")
    digit = _str(dtmf, "digit", ev, "dtmf.")
    if digit not in DTMF_DIGITS:  # also rejects "" and multi-character strings
        raise ProtocolError(
            f"dtmf message: dtmf.digit must be one of 0-9 * # A-D, not {_preview(digit)}", ev
        )
    return Dtmf(sequence_number=seq, stream_sid=stream_sid, track=track, digit=digit)


def _mark(obj: dict[str, Any]) -> Mark:
    ev = "mark"
    seq = _uint(obj, "sequenceNumber", ev)
    stream_sid = _stream_sid(obj, ev)
    name = _str(_object(obj, "mark", ev), "name", ev, "mark.")
    return Mark(sequence_number=seq, stream_sid=stream_sid, name=name)


def _stop(obj: dict[str, Any]) -> Stop:
    ev = "stop"
    seq = _uint(obj, "sequenceNumber", ev)
    stream_sid = _stream_sid(obj, ev)
    stop = _object(obj, "stop", ev)
    return Stop(
        sequence_number=seq,
        stream_sid=stream_sid,
        account_sid=_str(stop, "accountSid", ev, "stop."),
        call_sid=_str(stop, "callSid", ev, "stop."),
    )


_INBOUND: dict[str, Callable[[dict[str, Any]], InboundMessage]] = {
    "connected": _connected,
    "start": _start,
    "media": _media,
    "dtmf": _dtmf,
    "mark": _mark,
    "stop": _stop,
}


# --- Outbound (us -> Twilio) -------------------------------------------------------------------


def _outbound_media(obj: dict[str, Any]) -> OutboundMedia:
    media = _object(obj, "media", "media")
    return OutboundMedia(
        stream_sid=_stream_sid(obj, "media"), payload=_base64(media, "payload", "media", "media.")
    )


def _outbound_mark(obj: dict[str, Any]) -> OutboundMark:
    name = _str(_object(obj, "mark", "mark"), "name", "mark", "mark.")
    return OutboundMark(stream_sid=_stream_sid(obj, "mark"), name=name)


def _clear(obj: dict[str, Any]) -> Clear:
    return Clear(stream_sid=_stream_sid(obj, "clear"))


_OUTBOUND: dict[str, Callable[[dict[str, Any]], OutboundMessage]] = {
    "media": _outbound_media,
    "mark": _outbound_mark,
    "clear": _clear,
}


# --- Error text helpers ------------------------------------------------------------------------

_JSON_TYPES = {dict: "a JSON object", list: "an array", str: "a string", int: "a number",
               float: "a number", bool: "a boolean", type(None): "null"}


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _preview(text: str, limit: int = 40) -> str:
    """repr() of untrusted text, cut short so an error message stays one readable line."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."

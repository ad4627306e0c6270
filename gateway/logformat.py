"""How the gateway's log lines look: text (the default) or one JSON object a line.

``GATEWAY_LOG_FORMAT=json`` makes every line, the gateway's and uvicorn's alike (``gateway
serve`` hands uvicorn's loggers to the root handler), one JSON object: ``ts`` (UTC, ISO 8601,
milliseconds), ``level``, ``logger``, ``message``, and where they apply ``call_sid`` and
``stream_sid`` (every line of a call carries them: ``gateway.bridge.logs.CallLog``), ``peer``,
and ``exc`` (a traceback). A log shipper then needs no parsing rules.
"""

from __future__ import annotations

import datetime
import json
import logging
import re

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
FORMATS = ("text", "json")
#: A call's lines start with its SIDs in text (gateway.bridge.logs.CallLog); in JSON they are fields.
_CALL_PREFIX = re.compile(r"^\[call=[^\]]*\] ")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, object] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        call_sid = getattr(record, "call_sid", None)
        if call_sid:
            out["call_sid"] = call_sid
            out["stream_sid"] = getattr(record, "stream_sid", None)
            message = _CALL_PREFIX.sub("", message, count=1)
        out["message"] = message
        peer = getattr(record, "peer", None)
        if peer:
            out["peer"] = str(peer)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: str, fmt: str = "text") -> None:
    """The process's one log handler (stderr), in ``fmt``; replaces any handler set before."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=getattr(logging, level, logging.INFO), handlers=[handler], force=True)

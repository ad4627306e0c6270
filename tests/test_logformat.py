"""gateway.logformat: one JSON object a line, with the call's SIDs as fields."""

from __future__ import annotations

import json
import logging

from gateway.bridge.logs import CallLog
from gateway.logformat import JsonFormatter


def test_a_call_line_in_json_carries_its_sids_as_fields() -> None:
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("gateway.test.json")
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        CallLog(logger, {"call_sid": "CA1", "stream_sid": "MZ1"}).info("caller pressed %s", "5")
        logger.warning("[peer=203.0.113.9:4000] stream refused", extra={"peer": "203.0.113.9:4000"})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    call, peer, failed = (json.loads(JsonFormatter().format(r)) for r in records)
    assert call["call_sid"] == "CA1" and call["stream_sid"] == "MZ1"
    assert call["message"] == "caller pressed 5" and call["level"] == "INFO" and call["logger"] == "gateway.test.json"
    assert call["ts"].endswith("+00:00")
    assert peer["peer"] == "203.0.113.9:4000" and "call_sid" not in peer
    assert "ValueError: boom" in failed["exc"]

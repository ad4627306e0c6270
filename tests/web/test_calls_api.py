"""The calls API's checks, without a server: the bearer key, and the body of ``POST /calls``.
(Placing calls through the fake Twilio: tests/callflow/test_twilio_control.py.)"""

from __future__ import annotations

import json

import pytest

from gateway.web.calls_api import OutboundCall, bearer_matches


@pytest.mark.parametrize("header, ok", [
    ("Bearer k3y", True),
    ("bearer k3y", True),
    ("Bearer k3y ", False),
    ("Bearer other", False),
    ("Basic k3y", False),
    ("k3y", False),
    ("", False),
])
def test_the_bearer_key(header: str, ok: bool) -> None:
    assert bearer_matches("k3y", header) is ok


@pytest.mark.parametrize("key", [None, ""])
def test_no_key_configured_means_no_access(key: str | None) -> None:
    assert not bearer_matches(key, "Bearer ") and not bearer_matches(key, "Bearer None")


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_call_request_and_what_its_stream_brings_back() -> None:
    outbound = OutboundCall.from_json(body(to="+15550002222", context={"order": "A12"}), caller_id="+15550001111")
    assert (outbound.to, outbound.from_, outbound.agent) == ("+15550002222", "+15550001111", None)
    assert outbound.stream_parameters("ref1") == {
        "direction": "outbound", "ref": "ref1", "from": "+15550001111", "to": "+15550002222", "ctx.order": "A12"}
    named = OutboundCall.from_json(body(to="+1", **{"from": "+2"}, agent="gateway.demo.agent:demo_agent"), caller_id="+3")
    assert named.from_ == "+2" and named.stream_parameters("r")["agent"] == "gateway.demo.agent:demo_agent"


@pytest.mark.parametrize("raw, error", [
    (b"[1]", "the body must be a JSON object"),
    (b"{}", "'to' (the number to call) is required"),
    (b"", "'to' (the number to call) is required"),
    (body(to=5), "'to' (the number to call) is required"),
    (body(to="+1", context=["a"]), "'context' must be an object of strings"),
    (body(to="+1", context={"n": 1}), "'context' must be an object of strings"),
    (body(to="+1", agent="no_such_module_here:agent"), "GATEWAY_AGENT: cannot import"),
    (b"{not json", "Expecting property name"),
])
def test_a_bad_request_says_what_is_wrong(raw: bytes, error: str) -> None:
    with pytest.raises(ValueError) as exc:
        OutboundCall.from_json(raw, caller_id="+15550001111")
    assert str(exc.value).startswith(error)


def test_without_a_caller_id_from_is_required() -> None:
    with pytest.raises(ValueError, match="'from' is required"):
        OutboundCall.from_json(body(to="+1"), caller_id=None)

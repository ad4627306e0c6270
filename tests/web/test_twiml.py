"""The TwiML the gateway answers with: the stream (its URL from PUBLIC_URL, the call's
parameters, a token over them), the fallback verbs, and the drain's redirect."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from gateway.security import TOKEN_PARAMETER, CallTokens, InvalidCallToken
from gateway.settings import Settings
from gateway.web.twiml import connect_stream, redirect

NOW = 1_700_000_000.0


def settings(**overrides: str) -> Settings:
    return Settings.from_mapping({"PUBLIC_URL": "https://gw.example.com/phone", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                                  "TWILIO_AUTH_TOKEN": "twiml-test-token", "OPENAI_API_KEY": "sk-test", **overrides})


def test_the_stream_carries_the_parameters_and_a_token_over_them() -> None:
    s = settings()
    tokens = CallTokens.derived_from(s.twilio_auth_token)
    parameters = {"callSid": "CA1", "from": "+15550001111", "to": "+15550002222"}
    root = ET.fromstring(connect_stream(s, tokens, "CA1", parameters, now=NOW))
    stream = root.find("./Connect/Stream")
    assert stream is not None and stream.get("url") == "wss://gw.example.com/phone/twilio/media"
    sent = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert list(sent) == ["callSid", "from", "to", TOKEN_PARAMETER]
    token = sent.pop(TOKEN_PARAMETER)
    tokens.verify(token, "CA1", sent, now=NOW + 1)  # raises if not valid
    with pytest.raises(InvalidCallToken):
        tokens.verify(token, "CA1", {**sent, "to": "+15550003333"}, now=NOW + 1)
    with pytest.raises(InvalidCallToken):  # expired
        tokens.verify(token, "CA1", sent, now=NOW + s.call_token_ttl_s + 1)
    assert parameters == {"callSid": "CA1", "from": "+15550001111", "to": "+15550002222"}  # not changed
    assert [child.tag for child in root] == ["Connect", "Say"]  # the default fallback message


def test_the_fallback_verbs_follow_the_stream() -> None:
    s = settings(GATEWAY_FALLBACK_SAY="Sorry, please hold.", GATEWAY_FALLBACK_DIAL="+15550009999")
    root = ET.fromstring(connect_stream(s, CallTokens(b"k"), "CA1", {}, now=NOW))
    assert [child.tag for child in root] == ["Connect", "Say", "Dial"]
    assert root.find("Say").text == "Sorry, please hold."  # type: ignore[union-attr]


def test_the_drain_redirect() -> None:
    root = ET.fromstring(redirect("https://gw2.example.com/twilio/voice"))
    (verb,) = list(root)
    assert (verb.tag, verb.get("method"), verb.text) == ("Redirect", "POST", "https://gw2.example.com/twilio/voice")

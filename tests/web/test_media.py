"""The media route's handshake check, without a server: signed over ``PUBLIC_URL``'s stream URL,
or refused with a line naming the peer."""

from __future__ import annotations

import logging

from starlette.websockets import WebSocket

from gateway.security import TwilioSignatures
from gateway.settings import Settings
from gateway.web.media import MediaEndpoint

AUTH_TOKEN = "media-test-token"


def endpoint() -> MediaEndpoint:
    settings = Settings.from_mapping({"PUBLIC_URL": "https://gw.example.com", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                                      "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "OPENAI_API_KEY": "sk-test"})
    return MediaEndpoint(settings, TwilioSignatures(AUTH_TOKEN), registry=None, wiring=None)  # type: ignore[arg-type]


def handshake(signed_for: str) -> WebSocket:
    signature = TwilioSignatures(AUTH_TOKEN).sign(signed_for, {})
    scope = {"type": "websocket", "path": "/twilio/media", "headers": [(b"x-twilio-signature", signature.encode())],
             "client": ("203.0.113.9", 40412)}
    return WebSocket(scope, receive=None, send=None)  # type: ignore[arg-type]


def test_a_handshake_signed_over_the_stream_url_is_accepted(caplog) -> None:
    assert endpoint().handshake_signed(handshake("wss://gw.example.com/twilio/media"))
    assert caplog.records == []


def test_a_handshake_signed_over_another_url_is_refused_with_a_line_naming_the_peer(caplog) -> None:
    caplog.set_level(logging.WARNING, "gateway.app")
    assert not endpoint().handshake_signed(handshake("wss://elsewhere/twilio/media"))
    assert [r.getMessage() for r in caplog.records] == [
        "[peer=203.0.113.9:40412] media stream refused: X-Twilio-Signature does not match "
        "wss://gw.example.com/twilio/media"
    ]

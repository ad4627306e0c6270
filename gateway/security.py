"""Who may use the gateway: Twilio request signatures and per-call tokens.

Two independent checks (defence in depth):

1. ``X-Twilio-Signature`` on the voice webhook and on the Media Streams WebSocket handshake,
   validated with the ``twilio`` library's ``RequestValidator`` over URLs rebuilt from the
   configured ``PUBLIC_URL`` (a proxy or tunnel changes scheme, host and port, so the request's
   own URL cannot be trusted). The handshake is signed over the ``wss://`` URL exactly as
   written in our TwiML, with no parameters (Twilio docs, "Webhooks security":
   https://www.twilio.com/docs/usage/webhooks/webhooks-security).
2. A per-call token, sent to Twilio in a ``<Parameter>`` of our TwiML and echoed back in the
   stream's ``start.customParameters``: an HMAC over the call SID, an expiry and every other
   parameter we sent. Any instance holding the same secret verifies it, with no shared state.
   A ``start`` without a valid token ends the stream before any model connection is opened,
   so nobody burns model minutes uninvited even if a signature check were misconfigured.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping

from twilio.request_validator import RequestValidator, get_signature_algorithm

TOKEN_PARAMETER = "token"
_TOKEN_VERSION = "v1"


class InvalidCallToken(Exception):
    """The stream's per-call token is missing, malformed, expired or forged."""


class CallTokens:
    """Issues and verifies per-call tokens: ``v1.<expiry>.<base64url HMAC-SHA256>``."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("call token secret must not be empty")
        self._key = secret

    @classmethod
    def derived_from(cls, auth_token: str, explicit_secret: str | None = None) -> CallTokens:
        """The key: an explicit secret, else one derived from the Twilio auth token (domain
        separated, so a token never doubles as a Twilio signature)."""
        if explicit_secret:
            return cls(explicit_secret.encode())
        return cls(hmac.new(auth_token.encode(), b"gateway call token v1", hashlib.sha256).digest())

    def issue(self, call_sid: str, parameters: Mapping[str, str], *, now: float, ttl_s: int) -> str:
        expiry = int(now) + ttl_s
        return f"{_TOKEN_VERSION}.{expiry}.{self._mac(call_sid, expiry, parameters)}"

    def verify(self, token: str | None, call_sid: str, parameters: Mapping[str, str], *, now: float) -> None:
        """Raise ``InvalidCallToken`` saying why, unless ``token`` is valid for this call."""
        if not token:
            raise InvalidCallToken("no call token in the stream's parameters")
        version, _, rest = token.partition(".")
        expiry_text, _, mac = rest.partition(".")
        if version != _TOKEN_VERSION or not expiry_text.isdigit() or not mac:
            raise InvalidCallToken("malformed call token")
        expiry = int(expiry_text)
        expected = self._mac(call_sid, expiry, parameters)
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            raise InvalidCallToken("call token does not match this call (forged, or parameters altered)")
        if now > expiry:
            raise InvalidCallToken(f"call token expired {int(now - expiry)} s ago")

    def _mac(self, call_sid: str, expiry: int, parameters: Mapping[str, str]) -> str:
        signed = {k: v for k, v in parameters.items() if k != TOKEN_PARAMETER}
        message = json.dumps([_TOKEN_VERSION, call_sid, expiry, sorted(signed.items())], separators=(",", ":"))
        digest = hmac.new(self._key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class TwilioSignatures:
    """``X-Twilio-Signature`` checks, over URLs the caller rebuilt from ``PUBLIC_URL``."""

    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token)

    def webhook_valid(
        self, url: str, params: Mapping[str, str], signature: str | None, settings_header: str | None = None
    ) -> bool:
        if not signature:
            return False
        algorithm = get_signature_algorithm(settings_header)
        return self._validator.validate(url, dict(params), signature, algorithm)

    def stream_valid(self, stream_url: str, signature: str | None) -> bool:
        """The Media Streams handshake: signed over the wss:// URL of our TwiML, no params."""
        if not signature:
            return False
        return self._validator.validate(stream_url, {}, signature)

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        """What Twilio would send for ``url`` and ``params`` (for simulators and tests)."""
        return self._validator.compute_signature(url, dict(params))

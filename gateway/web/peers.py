"""Instances of one deployment talking to each other: who this instance is, signed owner hints,
and signed requests between instances.

Per-call state lives in the instance whose socket carries the call's media stream (its
*holder*). Twilio's callbacks for the call, though, reach whichever instance the load balancer
picks. So the URLs the gateway hands Twilio for a call carry an *owner hint*: the internal
address (``GATEWAY_INSTANCE_URL``) of the instance that handed them out, its *home*. An instance
that gets a callback for a call it does not hold forwards it home, and the home forwards it on
to the holder, which told the home where it is when the stream started
(``gateway.web.internal``). How the pieces fit, and why this design, is in docs/deploy.md.

- **Hints are signed**: ``<base64url(instance URL)>.<HMAC>``, with a key derived from the
  deployment's shared secret (``GATEWAY_CALL_TOKEN_SECRET`` or ``TWILIO_AUTH_TOKEN``, what call
  tokens use, domain separated). A hint that does not verify (forged, or from another
  deployment) is ignored and logged: the gateway never sends a request to an address it did not
  hand out itself.
- **Requests between instances are signed** over the method, the path, a timestamp and the
  body (``X-Gateway-Signature``), and refused when older than ``MAX_SKEW_S``: the internal
  endpoints are as closed to the internet as the rest, whichever listener they are reached on.
- **Blocking HTTP is kept off the event loop**: a request runs in a worker thread
  (``urllib``), with a short timeout; an instance that does not answer is reported as ``None``,
  never as an exception into a call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

__all__ = ["HINT_PARAMETER", "MAX_SKEW_S", "Peers", "SIGNATURE_HEADER", "TIME_HEADER"]

log = logging.getLogger("gateway.peers")

#: The query parameter of a callback URL that carries the owner hint.
HINT_PARAMETER = "gw_home"
SIGNATURE_HEADER = "X-Gateway-Signature"
TIME_HEADER = "X-Gateway-Time"
#: A signed request between instances older (or newer) than this is refused.
MAX_SKEW_S = 30.0
#: How long an instance waits for another before giving up on it.
TIMEOUT_S = 2.0
_HINT_DOMAIN = b"gateway owner hint v1"
_REQUEST_DOMAIN = b"gateway internal request v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def normal_url(url: str) -> str:
    """An instance URL as compared and signed: no trailing slash."""
    return url.rstrip("/")


class Peers:
    """This instance's internal address, its sibling workers', and the signing of hints and
    requests between instances. ``instance_url`` None: a lone instance (no hints, no forwarding)."""

    def __init__(self, secret: bytes, instance_url: str | None = None, siblings: Sequence[str] = ()) -> None:
        if not secret:
            raise ValueError("the peers' secret must not be empty")
        self.instance_url = normal_url(instance_url) if instance_url else None
        #: The other workers of this ``gateway serve --workers N`` (their instance URLs).
        self.siblings = tuple(normal_url(s) for s in siblings if normal_url(s) != self.instance_url)
        self._hint_key = hmac.new(secret, _HINT_DOMAIN, hashlib.sha256).digest()
        self._request_key = hmac.new(secret, _REQUEST_DOMAIN, hashlib.sha256).digest()

    @classmethod
    def derived_from(cls, auth_token: str, explicit_secret: str | None = None, *, instance_url: str | None = None,
                     siblings: Sequence[str] = ()) -> Peers:
        """Keyed like the call tokens (``gateway.security.CallTokens.derived_from``): every
        instance of a deployment shares the secret."""
        secret = explicit_secret.encode() if explicit_secret else auth_token.encode()
        return cls(secret, instance_url, siblings)

    def is_me(self, url: str | None) -> bool:
        return url is not None and self.instance_url is not None and normal_url(url) == self.instance_url

    # --- Owner hints -----------------------------------------------------------------------------

    def hint(self) -> str | None:
        """This instance's signed hint, or None for a lone instance."""
        if self.instance_url is None:
            return None
        url = self.instance_url.encode()
        return f"{_b64(url)}.{_b64(self._hint_mac(url))}"

    def hinted(self, hint: str | None) -> str | None:
        """The instance URL a hint names, if this deployment signed it; None for no hint or a bad
        one (forged, garbled, or another deployment's)."""
        if not hint:
            return None
        encoded, _, mac = hint.partition(".")
        try:
            url, given = _unb64(encoded), _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(given, self._hint_mac(url)):
            return None
        try:
            text = url.decode()
        except UnicodeDecodeError:
            return None
        return text if urlsplit(text).scheme in ("http", "https") else None

    def _hint_mac(self, url: bytes) -> bytes:
        return hmac.new(self._hint_key, url, hashlib.sha256).digest()[:16]

    # --- Signed requests between instances ----------------------------------------------------------

    def sign(self, method: str, path: str, body: bytes, now: float | None = None) -> dict[str, str]:
        """The headers that make a request to another instance's ``/internal/`` endpoint."""
        stamp = str(int(time.time() if now is None else now))
        return {TIME_HEADER: stamp, SIGNATURE_HEADER: self._request_mac(method, path, stamp, body)}

    def verify(self, method: str, path: str, body: bytes, headers: Mapping[str, str], now: float | None = None) -> bool:
        """Whether a request to an ``/internal/`` endpoint comes from an instance of this
        deployment, recently."""
        stamp, signature = headers.get(TIME_HEADER, ""), headers.get(SIGNATURE_HEADER, "")
        if not stamp.isdigit() or not signature:
            return False
        if abs((time.time() if now is None else now) - int(stamp)) > MAX_SKEW_S:
            return False
        return hmac.compare_digest(signature, self._request_mac(method, path, stamp, body))

    def _request_mac(self, method: str, path: str, stamp: str, body: bytes) -> str:
        message = b"\n".join([method.upper().encode(), path.encode(), stamp.encode(), hashlib.sha256(body).digest()])
        return _b64(hmac.new(self._request_key, message, hashlib.sha256).digest())

    async def post(self, url: str, path: str, payload: Any) -> Any | None:
        """POST JSON to another instance; its JSON answer, or None if it could not be reached
        or did not answer 2xx (logged)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        answer = await asyncio.to_thread(self._request, "POST", url, path, body)
        try:
            return None if answer is None else json.loads(answer or b"null")
        except ValueError:
            log.warning("instance %s answered POST %s with something that is not JSON", url, path)
            return None

    async def get(self, url: str, path: str) -> bytes | None:
        """GET from another instance: the body, or None (logged)."""
        return await asyncio.to_thread(self.fetch, url, path)

    def fetch(self, url: str, path: str) -> bytes | None:
        """GET, blocking (from a thread that is not the event loop's): the body, or None."""
        return self._request("GET", url, path, b"")

    def _request(self, method: str, url: str, path: str, body: bytes) -> bytes | None:
        """Blocking: run in a thread."""
        headers = {**self.sign(method, path, body), "Content-Type": "application/json"}
        request = urllib.request.Request(normal_url(url) + path, data=body if method == "POST" else None,
                                         method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            log.warning("instance %s answered %s %s with HTTP %d", url, method, path, exc.code)
        except (OSError, ValueError) as exc:  # refused, timed out, no route: it is gone
            log.warning("instance %s could not be reached (%s %s): %s", url, method, path, exc)
        return None

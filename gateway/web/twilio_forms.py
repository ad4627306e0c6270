"""Reading a Twilio webhook's form: what every Twilio callback endpoint does first.

Twilio POSTs ``application/x-www-form-urlencoded`` UTF-8 bodies of a few hundred bytes, signed
in ``X-Twilio-Signature`` over the URL it requested and the POST parameters
(https://www.twilio.com/docs/usage/webhooks/webhooks-security). The URL it requested is ours
as configured in ``PUBLIC_URL``, never what a proxy or tunnel rewrote the request into, so the
URL checked is rebuilt from ``PUBLIC_URL``: the request's path, less the ``root_path`` of a
mount or of ``uvicorn --root-path`` (``PUBLIC_URL`` names that prefix itself), and its query.

Each refusal is a ``FormRefused`` carrying the HTTP answer: 413 (over ``MAX_WEBHOOK_BYTES``),
415 (not a form), 400 (not UTF-8 form encoding, or a required parameter missing), 403 (the
signature does not match). A signature that does not match is logged with the peer, limited per
peer (``gateway.ratelog``).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from gateway.ratelog import peer_tag
from gateway.security import TwilioSignatures
from gateway.settings import Settings

__all__ = ["FORM_TYPE", "MAX_WEBHOOK_BYTES", "FormRefused", "TwilioForms", "parse_form", "signed_url"]

log = logging.getLogger("gateway.app")

#: Largest webhook body we read (Twilio's voice webhooks are a few hundred bytes).
MAX_WEBHOOK_BYTES = 64 * 1024
#: What Twilio sends, and nothing else.
FORM_TYPE = "application/x-www-form-urlencoded"


class FormRefused(Exception):
    """A webhook request that is not a signed Twilio form: the HTTP status and why."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message

    def response(self) -> Response:
        return PlainTextResponse(self.message, status_code=self.status_code)


def parse_form(content_type: str, body: bytes) -> dict[str, str]:
    """The parameters of a form body (the last of a repeated name wins)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind != FORM_TYPE:
        raise FormRefused(415, f"expected {FORM_TYPE}")
    try:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise FormRefused(400, "malformed form body") from None
    return dict(pairs)


def signed_url(settings: Settings, path: str, root_path: str = "", query: str = "") -> str:
    """The URL Twilio requested, and signed: ``PUBLIC_URL``, the path within the app, the query."""
    if root_path and path.startswith(root_path):
        path = path[len(root_path):]
    url = settings.public(path)
    return f"{url}?{query}" if query else url


class TwilioForms:
    def __init__(self, settings: Settings, signatures: TwilioSignatures, limit: int = MAX_WEBHOOK_BYTES) -> None:
        self.settings = settings
        self.signatures = signatures
        self.limit = limit

    async def read(self, request: Request, *, required: Sequence[str] = ()) -> dict[str, str]:
        """The signed form's parameters, each of ``required`` present; ``FormRefused`` otherwise."""
        body = await self._body(request)
        params = parse_form(request.headers.get("content-type", ""), body)
        if not self.signed(request, params):
            raise FormRefused(403, "invalid Twilio signature")
        if not all(params.get(name) for name in required):
            raise FormRefused(400, "missing " + " or ".join(required))
        return params

    def signed(self, request: Request, params: dict[str, str]) -> bool:
        if self.settings.insecure_skip_signature:
            return True
        url = signed_url(self.settings, request.url.path, request.scope.get("root_path", ""), request.url.query)
        ok = self.signatures.webhook_valid(
            url,
            params,
            request.headers.get("x-twilio-signature"),
            request.headers.get("x-twilio-webhooks-signature-settings"),
        )
        if not ok:
            log.warning("%s webhook refused: X-Twilio-Signature does not match %s", peer_tag(request.client), url)
        return ok

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            raise FormRefused(413, "request body too large")
        body = bytearray()
        async for chunk in request.stream():  # never buffer more than the limit
            body += chunk
            if len(body) > self.limit:
                raise FormRefused(413, "request body too large")
        return bytes(body)

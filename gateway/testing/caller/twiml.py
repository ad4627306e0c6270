"""From the gateway's answer to a call to what Twilio does with it.

- ``webhook_form`` / ``fetch_twiml``: the voice webhook POST Twilio makes when a call comes in
  (form-encoded, signed with ``X-Twilio-Signature`` over the URL and the sorted params).
- ``parse_stream_twiml``: the ``<Connect><Stream url=...>`` and its ``<Parameter>``s in the
  TwiML answer; ``StreamInstructions.twilio_problems()`` lists what real Twilio would refuse.
"""

from __future__ import annotations

import asyncio
import secrets
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.security import TwilioSignatures

__all__ = [
    "StreamInstructions",
    "TwimlError",
    "WebhookError",
    "fetch_twiml",
    "new_sid",
    "parse_stream_twiml",
    "webhook_form",
]

#: Twilio's limit on a ``<Parameter>``'s name and value together (TwiML ``<Stream>`` docs).
PARAMETER_LIMIT = 500


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits (``CA...`` call, ``AC...`` account,
    ``MZ...`` stream)."""
    return prefix + secrets.token_hex(16)


class TwimlError(ValueError):
    """The TwiML is not XML, or holds no ``<Connect><Stream>`` Twilio could connect to."""


class WebhookError(Exception):
    """The voice webhook did not answer 2xx (Twilio would play its "application error")."""

    def __init__(self, url: str, status: int, body: str) -> None:
        super().__init__(f"voice webhook {url} answered HTTP {status}: {body[:200]!r}")
        self.url = url
        self.status = status
        self.body = body


@dataclass(frozen=True)
class StreamInstructions:
    """What ``<Connect><Stream>`` told Twilio: where to connect, and the ``<Parameter>``s it
    must pass on in ``start.customParameters``."""

    url: str
    parameters: dict[str, str] = field(default_factory=dict)

    def twilio_problems(self) -> list[str]:
        """Why real Twilio would fail this stream (empty list: it would not). The simulator
        itself connects anyway, so local ``ws://`` URLs work in tests."""
        problems = []
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme != "wss":
            problems.append(f"stream url scheme is {parts.scheme!r}; Twilio requires 'wss'")
        if not parts.netloc:
            problems.append("stream url is not absolute")
        if parts.query:
            problems.append("stream url has a query string (error 31920); use <Parameter>")
        for name, value in self.parameters.items():
            if len(name) + len(value) >= PARAMETER_LIMIT:
                problems.append(
                    f"parameter {name[:40]!r}: name and value together must be under"
                    f" {PARAMETER_LIMIT} characters"
                )
        return problems


def parse_response(twiml: str | bytes) -> ET.Element:
    """The ``<Response>`` element of a TwiML document, or ``TwimlError`` saying what is wrong."""
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError as error:
        raise TwimlError(f"TwiML is not well-formed XML: {error}") from None
    if root.tag != "Response":
        raise TwimlError(f"TwiML root element is <{root.tag}>, expected <Response>")
    return root


def parse_stream_twiml(twiml: str | bytes) -> StreamInstructions:
    """The bidirectional stream in a TwiML ``<Response>``: ``<Connect><Stream url>`` and its
    ``<Parameter name value/>`` children. Raises ``TwimlError`` saying what is missing."""
    root = parse_response(twiml)
    stream = root.find("./Connect/Stream")
    if stream is None:
        found = " ".join(f"<{child.tag}>" for child in root) or "nothing"
        hint = " (<Start><Stream> is one-way; the gateway needs <Connect><Stream>)" if root.find(
            "./Start/Stream") is not None else ""
        raise TwimlError(f"TwiML has no <Connect><Stream>; its <Response> holds {found}{hint}")
    url = stream.get("url")
    if not url:
        raise TwimlError("<Stream> has no url attribute")
    parameters: dict[str, str] = {}
    for parameter in stream.findall("Parameter"):
        name = parameter.get("name")
        if name is None:
            raise TwimlError("<Parameter> without a name attribute")
        parameters[name] = parameter.get("value", "")
    return StreamInstructions(url=url, parameters=parameters)


def webhook_form(
    *, call_sid: str, account_sid: str, from_: str, to: str, call_status: str = "ringing"
) -> dict[str, str]:
    """The form Twilio POSTs to a number's voice URL for an incoming call (main fields)."""
    return {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": call_status,
        "Called": to,
        "Caller": from_,
        "Direction": "inbound",
        "From": from_,
        "To": to,
    }


async def fetch_twiml(
    webhook_url: str,
    form: Mapping[str, str],
    auth_token: str | None = None,
    *,
    timeout: float = 15.0,
) -> str:
    """POST ``form`` to the voice webhook as Twilio does and return the TwiML it answers.

    Signed with ``X-Twilio-Signature`` over ``webhook_url`` exactly as given plus ``form`` when
    ``auth_token`` is set (Twilio times out webhooks after 15 s). Raises ``WebhookError`` on a
    non-2xx answer. The blocking ``urllib`` request runs in a thread.
    """
    body = urllib.parse.urlencode(dict(form)).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "*/*",
        "User-Agent": "TwilioProxy/1.1",
    }
    if auth_token is not None:
        headers["X-Twilio-Signature"] = TwilioSignatures(auth_token).sign(webhook_url, form)
    request = urllib.request.Request(webhook_url, data=body, headers=headers, method="POST")

    def post() -> str:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                charset = response.headers.get_content_charset() or "utf-8"
                return response.read().decode(charset)
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", "replace")
            raise WebhookError(webhook_url, error.code, text) from None

    return await asyncio.to_thread(post)

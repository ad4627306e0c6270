"""Requests the fake Twilio makes to the application: status callbacks, answering-machine
results and TwiML fetches, each signed as Twilio signs them.

``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, URL + each POST param name+value sorted
by name)) (https://www.twilio.com/docs/usage/webhooks/webhooks-security). For a GET, the
params travel in the query string, so the URL signed is the one with the query and there are
no POST params.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from gateway.security import TwilioSignatures

__all__ = ["Callback", "deliver"]

#: Twilio gives up on a webhook after 15 s.
WEBHOOK_TIMEOUT_S = 15.0
_HEADERS = {"Accept": "*/*", "User-Agent": "TwilioProxy/1.1"}

CallbackKind = Literal["status", "amd", "twiml"]


@dataclass
class Callback:
    """One request Twilio made to the application, and what came back.

    ``kind``: ``"status"`` (a StatusCallback event), ``"amd"`` (AsyncAmdStatusCallback) or
    ``"twiml"`` (a voice webhook, ``Url`` or ``<Redirect>`` fetch). ``status`` is the HTTP
    status answered (None if no answer came: then ``error`` says why).
    """

    kind: CallbackKind
    url: str
    method: str
    form: dict[str, str]
    signature: str
    status: int | None = None
    body: str = field(default="", repr=False)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def deliver(
    kind: CallbackKind, url: str, form: Mapping[str, str], auth_token: str, method: str = "POST",
    via: str | None = None,
) -> Callback:
    """Send ``form`` to ``url`` as Twilio does, signed; never raises (failures are recorded).
    ``via``: where the request really goes, its scheme, host and port (the instance a load
    balancer picked), while the path, the query and the signature are ``url``'s. The blocking
    ``urllib`` request runs in a thread."""
    method = method.upper()
    form = dict(form)
    if method == "GET":
        split = urllib.parse.urlsplit(url)
        query = "&".join(q for q in (split.query, urllib.parse.urlencode(form)) if q)
        target, signed_params, data = split._replace(query=query).geturl(), {}, None
    else:
        target, signed_params, data = url, form, urllib.parse.urlencode(form).encode()
    signature = TwilioSignatures(auth_token).sign(target, signed_params)
    if via is not None:
        split, there = urllib.parse.urlsplit(target), urllib.parse.urlsplit(via)
        target = split._replace(scheme=there.scheme, netloc=there.netloc).geturl()
    callback = Callback(kind, url, method, form, signature)
    headers = {**_HEADERS, "X-Twilio-Signature": signature}
    if data is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(target, data=data, headers=headers, method=method)

    def send() -> None:
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                callback.body = response.read().decode("utf-8", "replace")
                callback.status = response.status
        except urllib.error.HTTPError as error:
            callback.body = error.read().decode("utf-8", "replace")
            callback.status = error.code
        except (OSError, ValueError) as error:  # refused, timed out, not a URL
            callback.error = f"{type(error).__name__}: {error}"

    await asyncio.to_thread(send)
    return callback

"""A local fake of Twilio: its REST API, and what Twilio does with the calls, for tests.

Aim the real ``twilio`` library at it (never patch the library) and run outbound-call and
call-control flows in CI, end to end: your code -> REST -> fake Twilio -> signed callbacks and
a Media Streams WebSocket -> your gateway -> your agent::

    from gateway.testing.twilio_api import FakeTwilio
    from gateway.twilio.rest import TwilioRest

    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, connect_url=to_local) as twilio:
        rest = TwilioRest(ACCOUNT_SID, AUTH_TOKEN, base_url=twilio.base_url)
        sid = await rest.create_call(to="+15550001111", from_="+15550002222", twiml=twiml,
                                     status_callback=f"{app}/status",
                                     status_callback_event=["initiated", "answered", "completed"])
        call = twilio.calls[sid]
        caller = await call.wait_caller()          # the callee's side of the stream
        caller.say(ulaw_hello)                     # the callee speaks (a TwilioCaller)
        await rest.hang_up(sid)                    # the stream gets stop, then a close
        await call.wait_callback("completed")
        assert call.statuses[-1] == "completed" and caller.closed_by == "caller"

``twilio.client()`` gives a plain ``twilio.rest.Client`` aimed at the fake, for code that uses
the library directly. ``FakeTwilio()`` with no arguments makes up an account SID and token.

**The REST API** (``twilio.base_url`` is ``http://127.0.0.1:PORT``; paths as the library
builds them, form-encoded bodies, Twilio-shaped JSON answers; see ``resources.py``):

- ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json``: create (``To``, ``From``, ``Twiml`` or
  ``Url``, ``Method``, ``StatusCallback``, ``StatusCallbackEvent`` (repeated),
  ``StatusCallbackMethod``, ``MachineDetection``, ``AsyncAmd``, ``AsyncAmdStatusCallback``,
  ``AsyncAmdStatusCallbackMethod``, ``Timeout``); 201 with the call, ``status`` "queued".
- ``GET`` / ``POST .../Calls/{CallSid}.json``: fetch / update (``Status`` completed|canceled,
  ``Twiml``, ``Url``, ``Method``).
- ``GET .../IncomingPhoneNumbers.json`` (``PhoneNumber``: partial match, ``*`` for any digit;
  ``FriendlyName``; ``PageSize``, ``Page``), in Twilio's paging envelope;
  ``GET`` / ``POST .../IncomingPhoneNumbers/{PNSid}.json`` (``VoiceUrl``, ``VoiceMethod``,
  ``FriendlyName``, ``VoiceFallbackUrl``, ``StatusCallback``, ...). ``twilio.add_number()``
  gives the account a number.
- Errors, in Twilio's JSON (``code``, ``message``, ``more_info``, ``status``): bad basic auth
  (AccountSid:AuthToken) is 401, code 20003 "Authenticate"; an unknown resource, another
  account's path, or an update of a call that has ended is 404, code 20404; no ``To`` is 400,
  21201; no ``From``, 21213; neither ``Twiml`` nor ``Url`` (nor ``ApplicationSid``), or a
  ``Url`` that is not absolute http(s), 400, 21205; ``Twiml`` over 4000 characters, 400,
  12100; a ``Status`` other than completed/canceled or a non-integer ``Timeout``, 400, 20001.
  Twilio documents 20003, 20404, 21201 and 21205; the other codes are the fake's guesses.
- ``latency_s``: every answer waits that long first (to prove a client does not block).
- Recorded: ``twilio.requests`` (``ApiRequest``: method, path, query, ``fields`` in order,
  ``form`` with lists for repeated names, headers, the status answered);
  ``twilio.calls[sid]`` (``FakeCall``); ``twilio.numbers[sid]`` (``FakeNumber``, with its
  ``updates``).

**The calls** (``call.py``), as Twilio handles them:

- *Outbound* (REST create): status callbacks for the requested ``StatusCallbackEvent``s
  (initiated, ringing, answered, completed; only completed if none are named), one at a time
  and in order. The call rings for ``answer_after_s`` and is answered by ``answered_by``
  ("human", "machine_start", "machine_end_beep", ..., "fax", "unknown"), or ends "busy",
  "no-answer", "failed" or "canceled" if that is the outcome; ``answer=fn(call)`` (sync or
  async) decides per call instead. A ``Timeout`` shorter than ``answer_after_s`` means
  no-answer. With ``MachineDetection``, ``answered_by`` is the call's ``AnsweredBy``; with
  ``AsyncAmd=true`` the result is POSTed to ``AsyncAmdStatusCallback`` ``amd_after_s`` after
  answering (``AccountSid``, ``AnsweredBy``, ``CallSid``, ``MachineDetectionDuration``) while
  the TwiML runs; without it the TwiML waits ``amd_after_s`` for the result.
- *Inbound*: ``await twilio.ring(webhook_url, from_, to)`` POSTs the signed voice webhook
  (``webhook_url``, or the ``VoiceUrl`` set on the number ``to``), runs the TwiML it answers
  and returns the ``FakeCall`` once its stream is connected. Later REST updates act on it.
- *TwiML*: ``<Connect><Stream url>`` connects a ``TwilioCaller``
  (``gateway.testing.caller``) to the stream, with the ``<Parameter>``s, the call's
  CallSid and AccountSid, the handshake signed over the URL as written; ``connect_url=fn``
  maps that URL to one reachable in the test (``speed`` is the caller's); ``deliver_via=fn``
  picks, for each request to the application, the instance it really reaches (a load
  balancer's pick: scheme, host and port), the URL and its signature unchanged. It is
  ``call.caller``: make the person on the phone speak, press keys, listen. When the
  application closes the stream, the next verb runs. ``<Dial>`` records its targets in
  ``call.dialed`` and holds the call (the far party is not simulated) until it is hung up;
  ``<Redirect>`` fetches the next document (signed); ``<Hangup>`` / ``<Reject>`` end the
  call. When the verbs run out, the call completes.
- *REST updates*: ``Status=completed`` ends an answered call: the stream gets ``stop`` and a
  close before the REST answer, status completed, the completed callback. Either status
  cancels a call not yet answered ("canceled"); "canceled" leaves an answered call alone.
  ``Twiml`` / ``Url`` replace the running TwiML the same way (stop, close) and run the new
  document; each is recorded in ``call.redirects``.
- *The other party hangs up*: ``await call.hang_up()`` (``stop``, close, completed).
- Every request to the application (status, ``amd``, ``twiml`` fetches) is signed with
  ``X-Twilio-Signature`` over the URL and the params with the auth token, and recorded in
  ``call.callbacks`` (``Callback``: kind, url, method, form, signature, status answered or
  error). A callback that fails is recorded in ``call.errors`` (code 15003), as are
  handshake failures (31920), TwiML that does not parse (12100) and webhooks that fail
  (11200). Completed callbacks carry ``CallDuration``.
- The call's record: ``status``, ``statuses``, ``answered_by``, ``twiml``, ``updates``,
  ``redirects``, ``verbs``, ``dialed``, ``callers`` / ``caller``, ``callbacks``,
  ``status_callbacks``, ``errors``, ``duration``.

**Waiting, not sleeping** (timeouts are real seconds; ``TimeoutError``, or ``CallEnded`` once
the call has ended without it): ``await twilio.wait_for_call(index)``,
``await twilio.wait_for_request(predicate)``, ``await call.wait_status("completed")``,
``await call.wait_caller()``, ``await call.wait_callback("completed", kind="status")``,
``await call.wait_until(predicate)``.

**Not simulated**: the far party of ``<Dial>`` (and its ``action``), every verb other than
the ones above (``<Say>``, ``<Play>``, ``<Gather>``, ``<Record>``, ... are recorded in
``call.verbs`` and take no time), ``<Connect>`` to anything but a ``<Stream>``,
``<Stream statusCallback>``, ``ApplicationSid`` (the call runs no TwiML), fallback URLs,
status callbacks of inbound calls, API keys (only AccountSid:AuthToken auth), listing or
deleting calls, buying numbers, the other REST resources, and real time: nothing is billed
or rate-limited, and a call only lasts as long as the test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.testing._lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.testing.twilio_api.call import ANSWERED_BY, NOT_ANSWERED, Answer, FakeCall
    from gateway.testing.twilio_api.resources import FakeNumber
    from gateway.testing.twilio_api.server import ApiRequest, FakeTwilio
    from gateway.testing.twilio_api.webhooks import Callback

__all__ = [
    "ANSWERED_BY",
    "NOT_ANSWERED",
    "Answer",
    "ApiRequest",
    "Callback",
    "FakeCall",
    "FakeNumber",
    "FakeTwilio",
]

# Each public name and its module, imported on first use (see gateway.testing._lazy).
__getattr__, __dir__ = lazy_exports(globals(), {
    "ANSWERED_BY": ".call",
    "NOT_ANSWERED": ".call",
    "Answer": ".call",
    "FakeCall": ".call",
    "FakeNumber": ".resources",
    "ApiRequest": ".server",
    "FakeTwilio": ".server",
    "Callback": ".webhooks",
})

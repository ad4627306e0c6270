"""A simulated Twilio phone call: Twilio's side of a Media Streams WebSocket, for tests.

Point it at the gateway's stream endpoint and it behaves like Twilio with a caller on the line,
over a real socket::

    from gateway.testing.caller import TwilioCaller, parse_stream_twiml

    stream = parse_stream_twiml(twiml)            # what the voice webhook answered
    async with TwilioCaller(stream.url, parameters=stream.parameters,
                            auth_token=AUTH_TOKEN, connect_url=local_ws_url) as caller:
        await caller.wait_agent_silent(quiet_ms=500)          # the greeting
        said = caller.say(ulaw_clip)                          # the caller speaks
        await caller.wait_agent_silent(after=said.end)        # the answer
        await caller.press("5")
        assert caller.invalid_count == 0 and caller.errors == []
    assert caller.heard_ms > 0 and caller.closed_by == "caller"

What it does, as Twilio does (Twilio's reference:
https://www.twilio.com/docs/voice/media-streams/websocket-messages):

- **Handshake.** Connects to ``connect_url`` (default: ``url``) with ``X-Twilio-Signature``
  computed over ``url`` exactly as written in the TwiML, with no params (no header without
  ``auth_token``; ``signature=`` forces one, for negative tests). An HTTP refusal raises
  ``HandshakeRejected`` (``.status``).
- **Start.** ``connected``, then ``start`` (``sequenceNumber`` 1; generated ``MZ``/``CA``/``AC``
  SIDs unless given; tracks ``["inbound"]``; ``customParameters`` = ``parameters``; mu-law
  8000 Hz mono). Every later message carries the next ``sequenceNumber``.
- **Caller audio.** A 160-byte (20 ms) ``media`` frame every 20 ms from the start, forever:
  ``chunk`` 1, 2, ...; ``timestamp`` = ``(chunk - 1) * 20`` ms on the caller clock, the start of
  the audio it holds; it goes out 20 ms later, when that audio has been spoken (absolute
  deadlines, no drift). Frames carry what ``say()`` queued, back to back, else mu-law silence
  (0xFF). ``press(digit)`` sends ``dtmf``; ``hang_up()``
  sends ``stop`` and closes (1000); ``send_raw()`` sends anything, for hostile-input tests.
- **Agent audio.** Outbound ``media`` is queued and played at real time; a ``mark`` is echoed
  when the audio before it has played (at once if nothing is queued); ``clear`` cuts the audio
  playing, drops the queue and echoes every pending mark at once. See ``gateway.testing.caller.playout``.
- **Record.** ``received`` (each valid message with its arrival time), ``invalid`` /
  ``invalid_count`` (frames Twilio would reject: bad JSON, unknown event, wrong streamSid,
  binary; recorded, never raised), ``clears`` (arrival times), ``keypresses`` ((time,
  digit) sent), ``marks_echoed`` (``MarkEcho``: name, time, ``cleared``), ``utterances``,
  ``heard_ms``, ``heard_audio()`` (concatenated),
  ``heard_segments()`` (unbroken runs with start times), ``heard_timeline()`` (from time 0,
  silence where nothing played), ``closed`` / ``closed_by`` / ``close_code`` /
  ``close_reason``, ``errors`` (exceptions of the background tasks; they end the call with
  1011 instead of leaking).
- **Time.** Everything is on ``caller.clock``: seconds since ``start``, times ``speed``.
  ``speed=10`` runs the whole call ten times faster than real time and records the same
  caller-clock times. Heard durations come from sample counts, not from measured time.
- **Waiting, not sleeping.** ``wait_heard(ms)``, ``wait_for_message("clear" | predicate,
  since=i)``, ``wait_agent_silent(quiet_ms, after=t)``, ``wait_said()``, ``wait_closed()``,
  ``wait_until(predicate)``. Timeouts are real seconds and raise ``TimeoutError``; a call that
  ends first raises ``CallEnded`` saying how it ended.

Whole calls: ``run_call(webhook_url=... | stream_url=..., audio=load_audio(path))`` POSTs the
incoming-call webhook like Twilio (``fetch_twiml``, ``webhook_form``), follows the TwiML, says
the clip and returns the hung-up caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.testing._lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.testing.caller.call import CallEnded, HandshakeRejected, TwilioCaller
    from gateway.testing.caller.clock import CallerClock
    from gateway.testing.caller.playout import HeardSegment, MarkEcho, Playout
    from gateway.testing.caller.records import InvalidMessage, Received, Utterance
    from gateway.testing.caller.run import load_audio, run_call
    from gateway.testing.caller.twiml import (
        StreamInstructions,
        TwimlError,
        WebhookError,
        fetch_twiml,
        new_sid,
        parse_stream_twiml,
        webhook_form,
    )

__all__ = [
    "CallEnded",
    "CallerClock",
    "HandshakeRejected",
    "HeardSegment",
    "InvalidMessage",
    "MarkEcho",
    "Playout",
    "Received",
    "StreamInstructions",
    "TwilioCaller",
    "TwimlError",
    "Utterance",
    "WebhookError",
    "fetch_twiml",
    "load_audio",
    "new_sid",
    "parse_stream_twiml",
    "run_call",
    "webhook_form",
]

# Each public name and its module, imported on first use (see gateway.testing._lazy).
__getattr__, __dir__ = lazy_exports(globals(), {
    "CallEnded": ".call",
    "HandshakeRejected": ".call",
    "TwilioCaller": ".call",
    "CallerClock": ".clock",
    "HeardSegment": ".playout",
    "MarkEcho": ".playout",
    "Playout": ".playout",
    "InvalidMessage": ".records",
    "Received": ".records",
    "Utterance": ".records",
    "load_audio": ".run",
    "run_call": ".run",
    "StreamInstructions": ".twiml",
    "TwimlError": ".twiml",
    "WebhookError": ".twiml",
    "fetch_twiml": ".twiml",
    "new_sid": ".twiml",
    "parse_stream_twiml": ".twiml",
    "webhook_form": ".twiml",
})

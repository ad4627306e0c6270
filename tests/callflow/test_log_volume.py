"""Log lines an attacker cannot inflate: 10,000 hostile messages against the running gateway
write a bounded number of lines, not one per message or per connection.

The mix, all from one peer (127.0.0.1), every handshake signed (the attacker has passed the
signature, as in the reliability run of issue 11):

- two genuine calls (valid token) that each send 2,500 unknown Twilio events;
- 50 streams that each send 99 unknown events before ``start`` and are then refused for a last
  message: not JSON, a binary frame, a text frame that is not UTF-8, media before ``start``, or
  a ``start`` with a forged token (ten streams of each);
- and, beyond the 10,000 messages, ten handshakes and ten webhooks with a wrong signature.

The per-stream message rate limit is raised so that the genuine calls may send theirs at once.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging

import httpx
import websockets

from gateway.bridge.ending import EndReason
from gateway.ratelog import BURST
from gateway.security import TwilioSignatures
from gateway.testing.realtime import Reply

from .conftest import ACCOUNT_SID, AUTH_TOKEN, finished, gateway_of, place_call

UNKNOWN_PER_CALL = 2_500
UNKNOWN_BEFORE_REFUSAL = 99
REFUSED_STREAMS = 50
#: The gateway's lines (INFO and above) for the whole run, start-up and shutdown included.
MOST_LINES = 80


def unknown(i: int, stream_sid: str = "") -> str:
    return json.dumps({"event": f"hostileEvent{i}", "streamSid": stream_sid, "sequenceNumber": str(i)})


def forged_start(i: int) -> str:
    sid = f"MZ{i:032d}"
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": sid,
                       "start": {"streamSid": sid, "accountSid": ACCOUNT_SID, "callSid": f"CA{i:032d}",
                                 "tracks": ["inbound"], "customParameters": {"token": "forged"},
                                 "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


#: The last message of a refused stream, by kind: (frame, sent as text).
LAST = [
    lambda i: ("{not json", True),
    lambda i: (b"\x00\x01", False),  # binary
    lambda i: (b'{"event": "\xff"}', True),  # a text frame that is not UTF-8
    lambda i: (json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": "/w=="}}), True),
    lambda i: (forged_start(i), True),
]


async def refused_stream(url: str, i: int) -> None:
    signature = TwilioSignatures(AUTH_TOKEN).sign(url, {})
    async with websockets.connect(url, additional_headers={"X-Twilio-Signature": signature}) as ws:
        for n in range(UNKNOWN_BEFORE_REFUSAL):
            await ws.send(unknown(n))
        frame, text = LAST[i % len(LAST)](i)
        await ws.send(frame, text=text)
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed:
            pass


async def test_ten_thousand_hostile_messages_write_a_bounded_number_of_lines(start_gateway, caplog) -> None:
    caplog.set_level(logging.INFO, "gateway")
    async with start_gateway([Reply("Hello.")], GATEWAY_MAX_MESSAGE_RATE="100000",
                             GATEWAY_MAX_MESSAGE_BURST="100000") as (gateway, realtime):
        url = gateway.url.replace("http://", "ws://") + "/twilio/media"
        calls = [await place_call(gateway) for _ in range(2)]
        for caller in calls:
            await caller.wait_heard(100)
            for i in range(UNKNOWN_PER_CALL):
                await caller.send_raw(unknown(i, caller.stream_sid))
        for batch in range(0, REFUSED_STREAMS, 10):
            await asyncio.gather(*(refused_stream(url, i) for i in range(batch, batch + 10)))
        async with httpx.AsyncClient() as client:
            for _ in range(10):
                with_bad_signature = {"X-Twilio-Signature": "forged"}
                handshake = await client.get(url.replace("ws://", "http://"), headers={
                    **with_bad_signature, "Connection": "Upgrade", "Upgrade": "websocket",
                    "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
                assert handshake.status_code == 403
                webhook = await client.post(gateway.url + "/twilio/voice", data={"CallSid": "CA1"},
                                            headers=with_bad_signature)
                assert webhook.status_code == 403
        for caller in calls:
            assert not caller.closed  # neither unknown events nor the others' refusals ended it
            await caller.hang_up()
        await finished(gateway, 2 + REFUSED_STREAMS)
        records = list(gateway_of(gateway).finished)
    assert not any(r.end_reason is EndReason.INTERNAL_ERROR for r in records)

    ours = [r for r in caplog.records if r.name.startswith("gateway")]
    lines = [r.getMessage() for r in ours]
    assert len(lines) < MOST_LINES, "\n".join(lines)
    # Each statement naming the peer wrote at most its burst (the test takes well under the
    # minute in which a statement earns one more line).
    statements = collections.Counter((r.name, r.msg) for r in ours if "[peer=127.0.0.1:" in r.getMessage())
    assert len(statements) >= 6 and max(statements.values()) <= BURST, statements
    assert any("naming peers were held back" in line for line in lines)  # told at shutdown

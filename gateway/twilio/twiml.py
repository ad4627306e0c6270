"""TwiML the gateway writes beyond ``<Connect><Stream>``: ``<Dial>`` for transfers and the
fallback (https://www.twilio.com/docs/voice/twiml/dial)."""

from __future__ import annotations

from twilio.twiml.voice_response import Dial, VoiceResponse


def dial_verb(target: str) -> Dial:
    """``<Dial>`` to an E.164 number or a SIP URI."""
    verb = Dial()
    if target.startswith("sip"):
        verb.sip(target)
    else:
        verb.number(target)
    return verb


def dial_twiml(target: str) -> str:
    """A whole TwiML document that dials ``target`` (a transfer's redirect)."""
    response = VoiceResponse()
    response.append(dial_verb(target))
    return str(response)

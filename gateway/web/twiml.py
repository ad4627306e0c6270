"""The TwiML the gateway answers with (built with the ``twilio`` library's ``VoiceResponse``).

- ``connect_stream``: ``<Connect><Stream url="wss://PUBLIC_HOST/.../twilio/media">`` with the
  call's parameters and a per-call token over them (``gateway.security.CallTokens``); Twilio
  echoes the parameters in the stream's ``start.customParameters``
  (https://www.twilio.com/docs/voice/twiml/stream). Then the fallback verbs, if configured.
- ``redirect``: ``<Redirect method="POST">`` to another instance (a draining one's new calls).
"""

from __future__ import annotations

from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

from gateway.twilio.twiml import dial_verb
from gateway.security import TOKEN_PARAMETER, CallTokens
from gateway.settings import Settings

__all__ = ["connect_stream", "redirect"]


def connect_stream(settings: Settings, tokens: CallTokens, key: str, parameters: dict[str, str], *, now: float) -> str:
    """TwiML connecting the call to our Media Streams URL. ``key`` is what the token is issued
    for: the call SID of an incoming call, the ``ref`` of an outbound one."""
    parameters = {**parameters, TOKEN_PARAMETER: tokens.issue(key, parameters, now=now, ttl_s=settings.call_token_ttl_s)}
    stream = Stream(url=settings.stream_url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    connect = Connect()
    connect.append(stream)
    response = VoiceResponse()
    response.append(connect)
    # Twilio goes on to the next verbs when the stream ends without the call ending: the
    # gateway closes it that way only when the model cannot be reached (a hang-up ends
    # the call over REST, a transfer replaces the TwiML).
    if settings.fallback_say:
        response.say(settings.fallback_say)
    if settings.fallback_dial:
        response.append(dial_verb(settings.fallback_dial))
    return str(response)


def redirect(url: str) -> str:
    response = VoiceResponse()
    response.redirect(url, method="POST")
    return str(response)

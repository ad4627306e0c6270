"""``run_call``: one whole simulated phone call, for the ``gateway`` CLI and for smoke tests.

Ring the voice webhook (or go straight to a stream URL), connect the stream the TwiML names,
listen to the greeting, say a clip, listen to the answer, hang up, and hand back the caller
with its record.
"""

from __future__ import annotations

import wave
from collections.abc import Mapping
from pathlib import Path

from gateway.audio import Resampler, pcm16_to_ulaw
from gateway.testing.caller.call import DEFAULT_FROM, DEFAULT_TO, CallEnded, TwilioCaller
from gateway.testing.caller.playout import SAMPLE_RATE
from gateway.testing.caller.twiml import fetch_twiml, new_sid, parse_stream_twiml, webhook_form

__all__ = ["load_audio", "run_call"]

_RAW_ULAW_SUFFIXES = {".ulaw", ".mulaw", ".ul", ".raw", ".pcmu"}


def load_audio(path: str | Path) -> bytes:
    """A clip for the caller to say, as mu-law 8 kHz.

    ``.wav``: PCM16 mono at 8, 16 or 24 kHz (resampled and encoded). ``.ulaw``, ``.mulaw``,
    ``.ul``, ``.pcmu``, ``.raw``: raw mu-law 8 kHz, used as is.
    """
    path = Path(path)
    if path.suffix.lower() in _RAW_ULAW_SUFFIXES:
        return path.read_bytes()
    if path.suffix.lower() != ".wav":
        raise ValueError(f"{path}: expected a .wav file or raw mu-law (.ulaw, .raw, ...)")
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            pcm16 = wav.readframes(wav.getnframes())
    except wave.Error as error:  # e.g. a mu-law WAV (format 7), which ``wave`` cannot read
        raise ValueError(f"{path}: {error}; use PCM16 WAV or raw mu-law") from None
    if channels != 1 or width != 2:
        got = f"{channels} channel(s) of {8 * width} bits"
        raise ValueError(f"{path}: need mono 16-bit PCM, got {got}")
    if rate != SAMPLE_RATE:
        resampler = Resampler(rate, SAMPLE_RATE)  # raises for rates other than 16/24 kHz
        pcm16 = resampler.process(pcm16) + resampler.flush()
    return pcm16_to_ulaw(pcm16)


async def run_call(
    webhook_url: str | None = None,
    stream_url: str | None = None,
    *,
    auth_token: str | None = None,
    audio: bytes | None = None,
    parameters: Mapping[str, str] | None = None,
    connect_url: str | None = None,
    from_: str = DEFAULT_FROM,
    to: str = DEFAULT_TO,
    wait_for_greeting: bool = True,
    quiet_ms: float = 1000.0,
    listen_s: float = 15.0,
    speed: float = 1.0,
) -> TwilioCaller:
    """Place one simulated call and return the hung-up ``TwilioCaller`` (its record).

    With ``webhook_url``: POST the incoming-call form to it (signed if ``auth_token``) and
    connect to the ``<Connect><Stream>`` of its TwiML, with its parameters. Otherwise connect
    to ``stream_url`` with ``parameters``. ``connect_url`` connects elsewhere than the URL the
    handshake is signed for (a public wss:// URL served locally).

    Then: if ``wait_for_greeting``, listen until the agent has spoken and been silent for
    ``quiet_ms``; say ``audio`` (mu-law 8 kHz, see ``load_audio``) if given, and listen for
    the answer the same way; hang up. Each listening phase gives up after ``listen_s`` of
    caller-clock time; a call the gateway ends early is returned as it ended.
    """
    if (webhook_url is None) == (stream_url is None):
        raise ValueError("give exactly one of webhook_url and stream_url")
    call_sid, account_sid = new_sid("CA"), new_sid("AC")
    if webhook_url is not None:
        form = webhook_form(call_sid=call_sid, account_sid=account_sid, from_=from_, to=to)
        stream = parse_stream_twiml(await fetch_twiml(webhook_url, form, auth_token))
        stream_url, parameters = stream.url, stream.parameters
    assert stream_url is not None
    caller = TwilioCaller(
        stream_url,
        parameters=parameters,
        auth_token=auth_token,
        connect_url=connect_url,
        call_sid=call_sid,
        account_sid=account_sid,
        from_=from_,
        to=to,
        speed=speed,
    )
    timeout = listen_s / speed
    async with caller:
        try:
            if wait_for_greeting:
                await _listen(caller, quiet_ms, timeout, after=0.0)
            if audio:
                utterance = caller.say(audio)
                await caller.wait_said(timeout=len(audio) / SAMPLE_RATE / speed + timeout)
                assert utterance.end is not None
                await _listen(caller, quiet_ms, timeout, after=utterance.end)
        except CallEnded:
            pass
    return caller


async def _listen(caller: TwilioCaller, quiet_ms: float, timeout: float, after: float) -> None:
    try:
        await caller.wait_agent_silent(quiet_ms, timeout, after=after)
    except TimeoutError:
        pass  # no (complete) answer: the record shows what was heard

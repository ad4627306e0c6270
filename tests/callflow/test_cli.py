"""The operator commands against a fake Twilio and a running gateway."""

from __future__ import annotations

import asyncio

from gateway import cli
from gateway.testing.realtime import Reply
from gateway.testing.twilio_api import FakeTwilio

from .conftest import ACCOUNT_SID, API_KEY, AUTH_TOKEN


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))  # the CLI runs its own event loop


async def test_configure_number_points_the_voice_webhook_at_the_gateway(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    async with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as twilio:
        number = twilio.add_number("+15550001111", voice_url="https://old.example.com/voice", voice_method="GET")
        for name, value in {
            "PUBLIC_URL": "https://gw.example.com", "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "OPENAI_API_KEY": "sk-test", "TWILIO_API_BASE_URL": twilio.base_url,
        }.items():
            monkeypatch.setenv(name, value)
        assert await run_cli("twilio", "configure-number", "+15550001111") == 0
        assert number.voice_url == "https://gw.example.com/twilio/voice" and number.voice_method == "POST"
        changed = capsys.readouterr().out
        assert "GET https://old.example.com/voice -> POST https://gw.example.com/twilio/voice" in changed
        assert await run_cli("twilio", "configure-number", "+15550001111") == 0
        assert "nothing changed" in capsys.readouterr().out
        assert await run_cli("twilio", "configure-number", "+15559999999") == 1
        assert "is not a number of account" in capsys.readouterr().err


async def test_call_and_calls_commands_talk_to_a_running_gateway(start_phone_system, monkeypatch, capsys) -> None:
    monkeypatch.setenv("GATEWAY_API_KEY", API_KEY)
    async with start_phone_system([Reply("Hello there.", duration_ms=2000)], GATEWAY_CALLER_ID="+15550009999") as (gateway, realtime, twilio):
        assert await run_cli("call", "+15557654321", "--context", "name=Ada", "--url", gateway.url) == 0
        assert "calling +15557654321 from +15550009999" in capsys.readouterr().out
        call = await twilio.wait_for_call()
        caller = await call.wait_caller()
        await caller.wait_heard(200)
        assert await run_cli("calls", "--url", gateway.url) == 0
        listing = capsys.readouterr().out
        assert call.sid in listing and "outbound" in listing and "+15557654321" in listing
        monkeypatch.setenv("GATEWAY_API_KEY", "wrong")
        assert await run_cli("calls", "--url", gateway.url) == 1
        assert "401" in capsys.readouterr().err
        await call.hang_up()

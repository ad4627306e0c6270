"""The console in a real browser: a headless Chromium (Debian's package) logs in through the form,
watches a call placed with the caller simulator appear live and show who is speaking, then
reads its transcript, events, timeline and recording after the caller hangs up.

Chromium is driven over the DevTools protocol (``browser.py``); the phone system is the test
kit's (the gateway on real uvicorn, the local Realtime server, a fake Twilio), at real speed so
that each side speaks for seconds, as on a phone, and the page's one-second updates see it.
Everything live is awaited by polling the page with a deadline.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from agents import function_tool
from agents.realtime import RealtimeAgent

from gateway.testing.realtime import Reply, ToolCall, When
from tests.console import browser
from tests.console.browser import Chromium, chromium_or_skip

GREETING = "Thanks for calling Acme, the order desk. How can I help you today?"
#: Markup in what the caller says must show as text, never become part of the page.
ASKED = "Where is my order 4271? <img src=x id=pwned onerror=alert(1)>"
ANSWER = "Your order 4271 ships tomorrow morning."


@function_tool
def order_status(order_id: str) -> str:
    """Where an order is."""
    return f"order {order_id}: ships tomorrow"


AGENT = RealtimeAgent(name="orders", instructions="Answer questions about orders.", tools=[order_status])
SCRIPT = [
    Reply(GREETING),
    When("order", (ToolCall("order_status", {"order_id": "4271"}),)),
    Reply(ANSWER),
]


def live_row(call_sid: str) -> str:
    return f'document.querySelector(`#live-calls tr[data-call-sid="{call_sid}"]`)'


def speaking(call_sid: str) -> str:
    """The live row's "who is speaking" (None while the row is absent)."""
    return f'{live_row(call_sid)}?.querySelector("td.speaking").dataset.speaking'


async def test_a_call_appears_live_shows_who_speaks_then_its_transcript(phone_system, tmp_path) -> None:
    binary = chromium_or_skip()
    phone = await phone_system(agent=AGENT, script=SCRIPT, speed=1.0, settings={
        "GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_RECORD": "true"})
    async with Chromium(tmp_path / "profile", binary) as chromium:
        page = await chromium.new_page()

        # Logged out, the console sends the browser to its login form; the key goes in the form.
        await page.goto(phone.url + "/console")
        assert await page.evaluate("location.pathname") == "/console/login"
        await page.evaluate("document.querySelector('#key').value = 'not the key'")
        await page.loaded_after("document.querySelector('form button').click()")
        assert await page.evaluate("document.querySelector('.error').textContent") == "That key is not right."
        await page.evaluate(f"document.querySelector('#key').value = {json.dumps(phone.api_key)}")
        await page.loaded_after("document.querySelector('form button').click()")
        assert await page.evaluate("location.pathname") == "/console"
        await page.wait_for("!document.querySelector('#live-empty').hidden", "no calls in progress")
        await page.evaluate("window.stillThisPage = true")  # a reload would lose it

        # A call: it appears live, with the agent speaking while its greeting plays.
        call = await phone.call(from_="+15550001111")
        await page.wait_for(f"{speaking(call.call_sid)} === 'agent'", "the agent speaking", timeout=10)
        row = await page.evaluate(f"[...{live_row(call.call_sid)}.cells].map(c => c.textContent)")
        assert row[0:5] == ["Agent", "+15550001111", phone.number, "inbound", "orders"]
        first = row[5]
        await page.wait_for(f"{live_row(call.call_sid)}.cells[5].textContent !== {json.dumps(first)}",
                            "the call's duration going up", timeout=5)
        await page.screenshot(tmp_path / "console-live.png")
        await call.listen()
        await page.wait_for(f"{speaking(call.call_sid)} === ''", "nobody speaking after the greeting", timeout=5)

        # The caller speaks: the row says so, then the agent answers (after a tool call).
        said = asyncio.create_task(call.say(ASKED))
        await page.wait_for(f"{speaking(call.call_sid)} === 'caller'", "the caller speaking", timeout=10)
        await said
        assert (await call.listen()).text == ANSWER
        assert await page.evaluate("window.stillThisPage") is True

        # Hung up: the call leaves the live table and is listed with the recent calls.
        await call.hang_up()
        await page.wait_for(f"!{live_row(call.call_sid)}", "the call gone from the live calls", timeout=5)
        link = f'document.querySelector(`#recent-calls tr[data-call-sid="{call.call_sid}"] a`)'
        await page.wait_for(f"!!{link}", "the call among the recent calls", timeout=10)
        await page.screenshot(tmp_path / "console-recent.png")

        # Its page: the transcript (as text), the tool call, the events, the picture, the recording.
        await page.loaded_after(f"{link}.click()")
        assert await page.evaluate("location.pathname") == f"/console/calls/{call.call_sid}"
        turns = await page.wait_for(
            "(() => { const t = [...document.querySelectorAll('#transcript li')]"
            ".map(li => [li.querySelector('.who').textContent, li.querySelector('.said').textContent]);"
            " return t.length ? t : null })()", "the transcript")
        assert ["Agent", GREETING] in turns
        assert ["Caller", ASKED] in turns
        assert ["Agent", ANSWER] in turns
        assert any(who == "Tool" and "order_status" in said and "ships tomorrow" in said for who, said in turns)
        assert await page.evaluate("document.getElementById('pwned')") is None
        assert await page.evaluate("document.querySelector('#transcript img')") is None
        events = await page.evaluate("[...document.querySelectorAll('#events tbody tr')].map(r => r.cells[1].textContent)")
        assert events[0] == "call_started" and events[-1] == "call_ended" and "tool_start" in events
        width = await page.wait_for("document.getElementById('timeline').complete &&"
                                    " document.getElementById('timeline').naturalWidth", "the timeline picture")
        assert width >= 480
        seconds = await page.wait_for("document.getElementById('recording').duration", "the recording's player")
        assert seconds > 5  # greeting, question and answer, in real time
        await page.screenshot(tmp_path / "console-call.png")

        # The key never appeared in a URL, and the page's scripts never failed.
        assert page.requested and not [url for url in page.requested if phone.api_key in url]
        assert page.errors == []


def test_a_missing_chromium_skips_the_test_but_fails_it_where_required(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("GATEWAY_TEST_REQUIRE_CHROMIUM", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        browser.chromium_or_skip()
    monkeypatch.setenv("GATEWAY_TEST_REQUIRE_CHROMIUM", "1")
    with pytest.raises(pytest.fail.Exception, match="GATEWAY_TEST_REQUIRE_CHROMIUM=1"):
        browser.chromium_or_skip()

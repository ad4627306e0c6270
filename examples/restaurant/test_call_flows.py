"""Call-flow tests for Bella's Trattoria, written with the gateway's test kit (docs/testing.md).

Each test is one phone call: the fake Twilio rings the real gateway, which runs the real agent
(its real tools) against the local Realtime server playing the model's side from a script.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from examples.restaurant.agent import Booking, BookingBook, build_agent
from gateway.bridge.ending import EndReason
from gateway.testing.phone import ToolUse
from gateway.testing.realtime import Reply, ToolCall, When

TODAY = dt.date(2030, 5, 1)  # a Wednesday
FRIDAY = "2030-05-03"
MANAGER = {"GATEWAY_TRANSFER_TARGETS": "manager=+15550100199"}
CALLER = "+15550104242"


@pytest.fixture
def book() -> BookingBook:
    """A fresh, empty booking book for each call, on a fixed calendar."""
    return BookingBook(today=lambda: TODAY)


@pytest.fixture
def host(book: BookingBook):
    return build_agent(book)


async def test_a_caller_books_a_table_for_four(phone_system, book, host) -> None:
    asked = {"date": FRIDAY, "time": "19:30", "party_size": 4}
    phone = await phone_system(agent=host, script=[
        Reply("Bella's, how can I help?"),
        ToolCall("check_availability", asked),
        Reply("Friday at seven thirty is free. Your name?"),
        ToolCall("book_table", {"name": "Rossi", **asked}),
        Reply("Booked: number ten oh one. See you Friday!"),
    ])
    call = await phone.call(from_=CALLER)
    assert (await call.listen()).text == "Bella's, how can I help?"

    await call.say("A table for four on Friday at seven thirty?")
    assert "Your name?" in (await call.listen()).text
    await call.say("Rossi.")
    confirmation = await call.listen()
    assert confirmation.text == "Booked: number ten oh one. See you Friday!"
    assert confirmation.ms == 60 * len(confirmation.text)  # heard in full

    # The real tools ran with the model's arguments, and their outputs went back to the model.
    assert call.tool_calls == [
        ToolUse("check_availability", asked, "Yes: a table for 4 is free on Friday 3 May 2030 at 19:30."),
        ToolUse("book_table", {"name": "Rossi", **asked},
                "Booked: a table for 4 under Rossi on Friday 3 May 2030 at 19:30. Booking number 1001."),
    ]
    assert [out.output for out in call.model.function_call_outputs] == [use.output for use in call.tool_calls]
    # The booking is in the book, with the number the caller rang from.
    assert book.bookings == {"1001": Booking("1001", "Rossi", dt.date(2030, 5, 3), dt.time(19, 30), 4,
                                             table=4, phone=CALLER)}

    record = await call.hang_up()
    assert record.end_reason is EndReason.CALLER_HUNG_UP
    assert call.transcript == [
        ("assistant", "Bella's, how can I help?"),
        ("user", "A table for four on Friday at seven thirty?"),
        ("assistant", "Friday at seven thirty is free. Your name?"),
        ("user", "Rossi."),
        ("assistant", "Booked: number ten oh one. See you Friday!"),
    ]


async def test_a_full_evening_offers_the_times_still_free(phone_system, book, host) -> None:
    # The one table for eight is taken at 19:00, and held for two hours.
    book.book("Bianchi", dt.date(2030, 5, 3), dt.time(19, 0), 8)
    phone = await phone_system(agent=host, script=[
        Reply("Bella's, how can I help?"),
        ToolCall("check_availability", {"date": FRIDAY, "time": "19:30", "party_size": 8}),
        Reply("I can do five, nine or half past nine."),
    ])
    call = await phone.call()
    await call.listen()
    await call.say("Eight people, Friday at seven thirty?")
    await call.listen()
    [check] = call.tool_calls
    assert check.output == "No table for 8 at 19:30. Free times that day: 17:00, 21:00, 21:30."


async def test_asking_for_the_manager_transfers_after_the_sentence_is_heard(phone_system, host) -> None:
    handing_off = "Putting you through to the manager."
    phone = await phone_system(agent=host, settings=MANAGER, script=[
        Reply("Bella's, how can I help?"),
        When("manager", (Reply(handing_off), ToolCall("transfer_call", {"target": "manager"}))),
    ])
    call = await phone.call()
    await call.listen()
    await call.say("Can I talk to the manager?")
    heard = await call.listen()
    assert heard.text == handing_off
    assert heard.ms == 60 * len(handing_off)  # every word heard before Twilio dialled
    assert call.transferred_to == ["+15550100199"]
    assert (await call.ended()).end_reason is EndReason.TRANSFERRED
    assert [(use.name, use.arguments) for use in call.tool_calls] == [("transfer_call", {"target": "manager"})]
    assert [e["target"] for e in call.events if e["event"] == "transfer"] == ["+15550100199"]


async def test_a_caller_who_talks_over_the_specials_is_heard(phone_system, host) -> None:
    # Barge-in is about timing: run at 4x, not the kit's 20x, so a millisecond of latency on a
    # busy machine is not 20 ms of the caller's time.
    specials = ("Tonight we have wild mushroom risotto, slow-cooked osso buco with gremolata, "
                "and a lemon and ricotta tart with fresh berries.")
    phone = await phone_system(agent=host, speed=4, script=[
        Reply("Bella's."),
        When("specials", Reply(specials)),
        Reply("Sure. How many?"),
    ])
    call = await phone.call()
    await call.listen()
    await call.say("What are the specials?", ms=400)
    await call.hear(600)  # the caller listens to the start of the specials...
    await call.say("Can I just book?", ms=400)  # ...then talks over them
    answer = await call.listen()
    assert answer.text == "Sure. How many?"
    assert answer.ms == 60 * len(answer.text)
    assert any(e["event"] == "interrupted" for e in call.events)
    specials_heard = call.heard_ms - 60 * len("Bella's.") - answer.ms
    assert 600 <= specials_heard < 60 * len(specials) / 2
    # The model was told about where the caller stopped hearing (to within a mark interval,
    # plus latency scaled up by the speed), and keeps no text of the specials.
    [cut] = call.model.truncations
    assert 500 <= cut.audio_end_ms <= specials_heard + 250, (cut.audio_end_ms, specials_heard)
    assert call.model.items[cut.item_id]["content"][0]["transcript"] == ""


async def test_a_caller_cancels_by_keying_in_the_booking_number(phone_system, book, host) -> None:
    book.book("Conti", dt.date(2030, 5, 4), dt.time(20, 0), 2)  # booking number 1001
    phone = await phone_system(agent=host, script=[
        Reply("Bella's, how can I help?"),
        When("cancel", (Reply("Please key in your booking number."),
                        ToolCall("collect_digits", {"count": 4}))),
        ToolCall("cancel_booking", {"number": "1001"}),
        Reply("Your table is cancelled. Anything else?"),
        When(re.compile(r"that's all|bye"), (Reply("Goodbye!"), ToolCall("hang_up"))),
    ])
    call = await phone.call()
    await call.listen()
    await call.say("I need to cancel.")
    assert "key in" in (await call.listen()).text
    await call.press("1001")
    assert "cancelled" in (await call.listen()).text
    await call.say("No, that's all. Bye!")
    assert (await call.listen()).text == "Goodbye!"

    assert (await call.ended()).end_reason is EndReason.AGENT_HUNG_UP
    assert call.tool_calls[:2] == [
        ToolUse("collect_digits", {"count": 4}, "The caller entered 1001 (ended by count)."),
        ToolUse("cancel_booking", {"number": "1001"},
                "Cancelled booking 1001: Conti, 2 guests, Saturday 4 May 2030 at 20:00."),
    ]
    assert book.bookings == {}
    # The digits went to the tool, not to the model as something the caller said.
    assert call.model.user_messages == []


async def test_a_wedding_party_is_handed_to_catering(phone_system, host) -> None:
    phone = await phone_system(agent=host, script=[
        Reply("Bella's, how can I help?"),
        When("wedding", ToolCall("transfer_to_catering")),
        Reply("Catering here. How many guests, and what style?"),
        When("family style", ToolCall("catering_quote", {"guests": 30, "style": "family style"})),
        Reply("That comes to eleven hundred and forty dollars."),
    ])
    call = await phone.call()
    await call.listen()
    await call.say("It's for a wedding.")
    assert "Catering here" in (await call.listen()).text
    await call.say("Thirty, family style.")
    assert "eleven hundred" in (await call.listen()).text

    assert call.record.agent == "Catering"
    assert [(e["from_agent"], e["to_agent"]) for e in call.events if e["event"] == "handoff"] == [
        ("Host", "Catering")]
    assert call.tool_calls == [ToolUse("catering_quote", {"guests": 30, "style": "family style"},
                                       "Family style for 30 guests: 30 x $38 = $1,140 before tax and service.")]
    # The model now runs as the catering agent: its instructions and tools, not the host's.
    session = call.model.session
    assert session["instructions"].startswith("You look after private events")
    assert {tool["name"] for tool in session["tools"]} == {"catering_quote", "transfer_call", "hang_up"}

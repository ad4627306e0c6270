"""Bella's Trattoria: a restaurant's phone line, answered by a realtime voice agent.

The host takes table bookings (``check_availability``, ``book_table``), cancels them by the
booking number the caller keys in (``collect_digits``, ``cancel_booking``), puts the caller
through to the manager (``transfer_call``), hands large parties and events to the catering
agent (a handoff), and hangs up after saying goodbye (``hang_up``).

Run it behind the gateway with ``GATEWAY_AGENT=examples.restaurant.agent:agent`` (see
README.md). The bookings live in memory, in ``bookings``: swap ``BookingBook`` for your
database. Tests build their own with ``build_agent(BookingBook(...))``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agents import RunContextWrapper, function_tool
from agents.realtime import RealtimeAgent, realtime_handoff

from gateway.bridge.agents import CallInfo
from gateway.tools import collect_digits, hang_up, transfer_call

#: Table sizes; each seating takes the smallest free table that fits the party.
TABLES: tuple[int, ...] = (2, 2, 2, 2, 4, 4, 4, 6, 8)
FIRST_SEATING = dt.time(17, 0)
LAST_SEATING = dt.time(21, 30)
SEATING_MINUTES = 30  # seatings every half hour
TABLE_HELD_MINUTES = 120  # a booking keeps its table this long
CLOSED_WEEKDAY = 0  # Monday
MAX_PARTY = 8  # larger parties go to the catering and events team

#: Catering price per guest, in dollars, by style; and the smallest event catered.
CATERING_PRICES = {"buffet": 32, "family style": 38, "plated": 49}
CATERING_MIN_GUESTS = 15


@dataclass(frozen=True)
class Booking:
    number: str  # four digits, so the caller can key it in
    name: str
    date: dt.date
    time: dt.time
    party_size: int
    table: int  # index into the book's tables
    phone: str  # the number the caller rang from


class BookingBook:
    """The restaurant's bookings, in memory.

    The Agents SDK runs plain (non-async) tools in worker threads, so two calls can book at
    the same moment: one lock makes "is a table free? then take it" atomic. ``today`` is
    injectable so tests do not depend on the calendar.
    """

    def __init__(self, tables: Sequence[int] = TABLES,
                 today: Callable[[], dt.date] = dt.date.today) -> None:
        self.tables = tuple(tables)
        self.today = today
        self.bookings: dict[str, Booking] = {}
        self._next_number = 1001
        self._lock = threading.Lock()

    def problem(self, date: dt.date, time: dt.time, party_size: int) -> str | None:
        """Why a booking cannot be taken at all (closed, past, out of hours, party size)."""
        if date < self.today():
            return "That date has passed."
        if date.weekday() == CLOSED_WEEKDAY:
            return "We are closed on Mondays."
        if not (FIRST_SEATING <= time <= LAST_SEATING) or time.minute % SEATING_MINUTES:
            return "We seat every half hour from 17:00 to 21:30."
        if party_size < 1:
            return "The party needs at least one guest."
        if party_size > MAX_PARTY:
            return f"Parties over {MAX_PARTY} are looked after by our catering and events team."
        return None

    def free_table(self, date: dt.date, time: dt.time, party_size: int) -> int | None:
        """The smallest table that fits the party and is not held at that time."""
        start = _minutes(time)
        held = {b.table for b in self.bookings.values()
                if b.date == date and abs(_minutes(b.time) - start) < TABLE_HELD_MINUTES}
        fitting = [i for i, seats in enumerate(self.tables) if seats >= party_size and i not in held]
        return min(fitting, key=lambda i: self.tables[i], default=None)

    def free_times(self, date: dt.date, party_size: int) -> list[dt.time]:
        """Every seating that day with a table for the party."""
        times = []
        minute = _minutes(FIRST_SEATING)
        while minute <= _minutes(LAST_SEATING):
            time = dt.time(minute // 60, minute % 60)
            if self.free_table(date, time, party_size) is not None:
                times.append(time)
            minute += SEATING_MINUTES
        return times

    def book(self, name: str, date: dt.date, time: dt.time, party_size: int, phone: str = "") -> Booking | None:
        """Takes the booking, or None if no table is free (check ``problem`` first)."""
        with self._lock:
            table = self.free_table(date, time, party_size)
            if table is None:
                return None
            booking = Booking(str(self._next_number), name, date, time, party_size, table, phone)
            self._next_number += 1
            self.bookings[booking.number] = booking
            return booking

    def cancel(self, number: str) -> Booking | None:
        with self._lock:
            return self.bookings.pop(number, None)


def _minutes(time: dt.time) -> int:
    return time.hour * 60 + time.minute


def _when(date: dt.date, time: dt.time) -> str:
    return f"{date:%A} {date.day} {date:%B %Y} at {time:%H:%M}"


def _parse(date: str, time: str) -> tuple[dt.date, dt.time] | str:
    try:
        return dt.date.fromisoformat(date.strip()), dt.time.fromisoformat(time.strip())
    except ValueError:
        return "Give the date as YYYY-MM-DD and the time as HH:MM, 24-hour."


def build_agent(book: BookingBook) -> RealtimeAgent:
    """The host agent (with the catering agent as a handoff), working on ``book``."""

    def bookable(date: str, time: str, party_size: int):
        """(day, seating) if the request makes sense, else what is wrong with it, for the model."""
        parsed = _parse(date, time)
        if isinstance(parsed, str):
            return parsed
        problem = book.problem(*parsed, party_size)
        return problem or parsed

    @function_tool
    def check_availability(date: str, time: str, party_size: int) -> str:
        """Check whether a table is free.

        Args:
            date: The date, YYYY-MM-DD.
            time: The seating time, HH:MM in 24-hour time (every half hour, 17:00 to 21:30).
            party_size: How many guests.
        """
        checked = bookable(date, time, party_size)
        if isinstance(checked, str):
            return checked
        day, seating = checked
        if book.free_table(day, seating, party_size) is not None:
            return f"Yes: a table for {party_size} is free on {_when(day, seating)}."
        others = book.free_times(day, party_size)
        if not others:
            return f"Sorry, we are fully booked for {party_size} on {day:%A} {day.day} {day:%B}."
        return (f"No table for {party_size} at {seating:%H:%M}. Free times that day: "
                + ", ".join(f"{t:%H:%M}" for t in others) + ".")

    @function_tool
    def book_table(ctx: RunContextWrapper[CallInfo], name: str, date: str, time: str, party_size: int) -> str:
        """Book a table. Check availability first and ask for the caller's name.

        Args:
            name: The name the booking is under.
            date: The date, YYYY-MM-DD.
            time: The seating time, HH:MM in 24-hour time.
            party_size: How many guests.
        """
        checked = bookable(date, time, party_size)
        if isinstance(checked, str):
            return checked
        day, seating = checked
        phone = getattr(ctx.context, "from_", "")  # the caller's number, for the confirmation
        booking = book.book(name.strip(), day, seating, party_size, phone)
        if booking is None:
            return f"Sorry, that table has just gone: nothing is free for {party_size} at {seating:%H:%M}."
        return (f"Booked: a table for {party_size} under {booking.name} on {_when(day, seating)}. "
                f"Booking number {booking.number}.")

    @function_tool
    def cancel_booking(number: str) -> str:
        """Cancel a booking by its four-digit booking number (collect it with collect_digits).

        Args:
            number: The booking number.
        """
        booking = book.cancel(number.strip())
        if booking is None:
            return f"There is no booking number {number}."
        return (f"Cancelled booking {booking.number}: {booking.name}, {booking.party_size} guests, "
                f"{_when(booking.date, booking.time)}.")

    @function_tool
    def catering_quote(guests: int, style: str) -> str:
        """Price an event or catering order.

        Args:
            guests: How many guests.
            style: One of "buffet", "family style" or "plated".
        """
        price = CATERING_PRICES.get(style.strip().lower())
        if price is None:
            return "We offer " + ", ".join(CATERING_PRICES) + "."
        if guests < CATERING_MIN_GUESTS:
            return f"Events start at {CATERING_MIN_GUESTS} guests; smaller parties can book a table."
        return (f"{style.strip().capitalize()} for {guests} guests: {guests} x ${price} = "
                f"${guests * price:,} before tax and service.")

    def host_instructions(ctx: RunContextWrapper[CallInfo], agent: RealtimeAgent) -> str:
        today = book.today()
        return (
            "You answer the phone at Bella's Trattoria, an Italian restaurant. "
            f"Today is {today:%A} {today.day} {today:%B %Y}. We are open Tuesday to Sunday, "
            "seating every half hour from 5 pm to 9:30 pm; closed on Mondays. "
            "This is a phone call: speak warmly, one or two short sentences at a time.\n"
            "- Bookings: get the date, time and number of guests, call check_availability, then "
            "ask for a name and call book_table. Read back the booking number. Pass dates as "
            "YYYY-MM-DD and times as HH:MM (24-hour).\n"
            "- Cancellations: ask the caller to key in their four-digit booking number, call "
            "collect_digits with count 4, then cancel_booking.\n"
            f"- Parties over {MAX_PARTY}, private events and catering: hand over to the catering team.\n"
            "- If the caller asks for the manager or has a complaint, say you are putting them "
            "through, then call transfer_call with target \"manager\".\n"
            "- When the caller is done, say goodbye, then call hang_up."
        )

    catering = RealtimeAgent(
        name="Catering",
        instructions=(
            "You look after private events and catering at Bella's Trattoria, on the phone. "
            f"Events are for {CATERING_MIN_GUESTS} guests or more, served "
            + ", ".join(CATERING_PRICES) + ". Ask for the number of guests and the style, "
            "quote with catering_quote, and offer to have the manager call back to confirm: if "
            "the caller wants to talk to them now, call transfer_call with target \"manager\". "
            "When the caller is done, say goodbye, then call hang_up."
        ),
        tools=[catering_quote, transfer_call, hang_up],
    )
    return RealtimeAgent(
        name="Host",
        instructions=host_instructions,
        tools=[check_availability, book_table, cancel_booking, collect_digits, transfer_call, hang_up],
        handoffs=[realtime_handoff(
            catering,
            tool_description_override="Hand the caller to the catering and events team: parties "
            f"over {MAX_PARTY}, private events, catering orders.",
        )],
    )


#: The restaurant's bookings while the gateway runs (lost on restart: use a database).
bookings = BookingBook()
#: What ``GATEWAY_AGENT=examples.restaurant.agent:agent`` loads.
agent = build_agent(bookings)

"""Log lines a peer cannot multiply (gateway.ratelog): the limiter with explicit timestamps, and
the logging filter on records as the gateway writes them."""

from __future__ import annotations

import logging

import pytest

from gateway.ratelog import LogLimiter, Pass, PeerLogFilter, host_of, peer_tag


def passes(limiter: LogLimiter, key: object, times: list[float]) -> list[Pass | None]:
    return [limiter.allow(key, t) for t in times]


def test_a_burst_then_one_line_per_interval_each_telling_what_was_held_back() -> None:
    limiter = LogLimiter(burst=3, every_s=60, total_burst=100, total_every_s=1)
    first = passes(limiter, "k", [0, 0, 0])
    assert first == [Pass(0, 0.0, 0)] * 3
    assert passes(limiter, "k", [1, 2, 59]) == [None, None, None]  # the burst is spent
    # A minute after the burst (a minute's token: one line), the count of what was held back.
    assert limiter.allow("k", 60) == Pass(suppressed=3, over_s=60.0)
    assert limiter.allow("k", 61) is None
    assert limiter.allow("k", 125) == Pass(suppressed=1, over_s=65.0)
    assert limiter.suppressed_total == 4 and limiter.untold == 0


def test_tokens_build_up_to_the_burst_and_no_further() -> None:
    limiter = LogLimiter(burst=2, every_s=10, total_burst=100, total_every_s=1)
    assert None not in passes(limiter, "k", [0, 0])
    assert passes(limiter, "k", [10_000, 10_000, 10_000]) == [Pass(over_s=10_000.0), Pass(), None]


def test_keys_have_budgets_of_their_own() -> None:
    limiter = LogLimiter(burst=1, every_s=60, total_burst=100, total_every_s=1)
    assert limiter.allow(("10.0.0.1", "refused"), 0) is not None
    assert limiter.allow(("10.0.0.1", "refused"), 1) is None
    assert limiter.allow(("10.0.0.1", "bad frame"), 1) is not None  # another kind of line
    assert limiter.allow(("10.0.0.2", "refused"), 1) is not None  # another peer


def test_all_keys_together_share_one_budget() -> None:
    """A thousand hosts get no more lines than the total budget, whatever each one's."""
    limiter = LogLimiter(burst=5, every_s=60, total_burst=10, total_every_s=5)
    written = [limiter.allow(f"10.0.{i // 256}.{i % 256}", 0.001 * i) for i in range(1000)]
    assert sum(v is not None for v in written) == 10
    # The total refills one line every 5 s (counted from the first line, at 0); the next line of
    # a held-back key written then tells its count.
    assert limiter.allow("10.0.0.10", 4.9) is None
    told = limiter.allow("10.0.0.10", 5.0)
    assert told is not None and told.suppressed == 2 and told.over_s == pytest.approx(4.99)


def test_memory_is_bounded_and_forgotten_counts_are_told_by_the_next_line() -> None:
    limiter = LogLimiter(burst=1, every_s=60, total_burst=10_000, total_every_s=1, max_keys=100)
    for i in range(100):
        assert limiter.allow(i, 0) is not None
        assert limiter.allow(i, 0) is None  # one held back each
    assert len(limiter) == 100 and limiter.untold == 100
    # 50 new peers push out the 50 least recently used; each new peer's line tells the count of
    # the one it pushed out.
    told = [limiter.allow(i, 1) for i in range(100, 150)]
    assert [t.forgotten if t else None for t in told] == [1] * 50
    assert len(limiter) == 100 and limiter.untold == 50 and limiter.forgotten == 0
    assert limiter.allow(150, 2) == Pass(forgotten=1)  # it pushed out key 50
    assert limiter.untold == 49


def test_a_key_used_again_is_not_the_one_forgotten() -> None:
    limiter = LogLimiter(burst=1, every_s=60, total_burst=100, total_every_s=1, max_keys=2)
    limiter.allow("a", 0)
    limiter.allow("b", 0)
    limiter.allow("a", 1)  # held back, and now the most recently used
    limiter.allow("c", 2)  # pushes out "b"
    assert limiter.allow("a", 61) == Pass(suppressed=1, over_s=61.0)


def test_the_note() -> None:
    assert Pass().note("h") == ""
    assert Pass(3, 59.6).note("203.0.113.9") == "(3 more like this from 203.0.113.9 suppressed in the last 60 s)"
    assert Pass(0, 0, 7).note("h") == "(7 more from peers no longer tracked)"
    assert Pass(1, 2, 7).note("h") == "(1 more like this from h suppressed in the last 2 s; 7 more from peers no longer tracked)"


@pytest.mark.parametrize("bad", [dict(burst=0), dict(total_burst=0), dict(max_keys=0), dict(every_s=0),
                                 dict(total_every_s=-1)])
def test_nonsense_budgets_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LogLimiter(**bad)  # type: ignore[arg-type]


def test_peer_tags_and_hosts() -> None:
    assert peer_tag(("203.0.113.9", 40412)) == "[peer=203.0.113.9:40412]"
    assert peer_tag(None) == "[peer=?]"
    assert host_of("203.0.113.9:40412") == "203.0.113.9"
    assert host_of("2001:db8::1:40412") == "2001:db8::1"
    assert host_of("?") == "?"


# --- The filter, on records as the gateway writes them -------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logged(caplog):
    """A filter with a fixed clock on the test's loggers, and the messages they wrote."""
    clock = Clock()
    peer_filter = PeerLogFilter(LogLimiter(burst=2, every_s=60, total_burst=100, total_every_s=1), clock)
    peer_filter.install(("test.ratelog.call", "test.ratelog.app"))
    caplog.set_level(logging.INFO, "test.ratelog")
    yield clock, peer_filter, lambda: [r.getMessage() for r in caplog.records]
    peer_filter.uninstall()
    assert peer_filter not in logging.getLogger("test.ratelog.call").filters


def test_lines_naming_a_peer_are_limited_per_host_and_statement(logged) -> None:
    clock, _, messages = logged
    call = logging.getLogger("test.ratelog.call")
    for port in range(40_000, 40_010):  # ten connections from one host, each refused
        call.warning("%s stream refused before start: %s", f"[peer=203.0.113.9:{port}]", "not JSON")
    call.warning("%s stream refused: no start within %g s", "[peer=203.0.113.9:41000]", 10)  # another statement
    call.warning("%s stream refused before start: %s", "[peer=198.51.100.7:5000]", "not JSON")  # another host
    clock.now = 60.0
    call.warning("%s stream refused before start: %s", "[peer=203.0.113.9:42000]", "binary")
    assert messages() == [
        "[peer=203.0.113.9:40000] stream refused before start: not JSON",
        "[peer=203.0.113.9:40001] stream refused before start: not JSON",
        "[peer=203.0.113.9:41000] stream refused: no start within 10 s",
        "[peer=198.51.100.7:5000] stream refused before start: not JSON",
        "[peer=203.0.113.9:42000] stream refused before start: binary "
        "(8 more like this from 203.0.113.9 suppressed in the last 60 s)",
    ]


def test_lines_naming_no_peer_pass_untouched(logged) -> None:
    _, peer_filter, messages = logged
    app = logging.getLogger("test.ratelog.app")
    for _ in range(10):
        app.info("[call=CA1 stream=MZ1] call started: from %s to %s", "+1555", "+1556")
    assert len(messages()) == 10 and len(peer_filter.limiter) == 0


def test_a_call_s_sids_are_no_part_of_the_kind(logged) -> None:
    """A peer chooses its call SID: a line carrying both is limited by host and statement."""
    _, _, messages = logged
    call = logging.getLogger("test.ratelog.call")
    for i in range(5):
        call.warning(f"[call=CA{i} stream=MZ{i}] %s stream refused before any model connection: %s",
                     f"[peer=203.0.113.9:{4000 + i}]", "invalid call token")
    assert len(messages()) == 2


def test_a_peer_given_as_an_attribute(logged) -> None:
    _, _, messages = logged
    app = logging.getLogger("test.ratelog.app")
    for port in range(5):
        app.warning("webhook refused", extra={"peer": f"[peer=203.0.113.9:{port}]"})
    assert messages() == ["webhook refused"] * 2


def test_a_malformed_line_is_left_to_the_handler(logged) -> None:
    _, _, _ = logged
    record = logging.LogRecord("test.ratelog.app", logging.WARNING, __file__, 1, "%d [peer=x:1]", ("nan",), None)
    assert PeerLogFilter().filter(record) is True

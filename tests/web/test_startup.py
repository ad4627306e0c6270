"""Start-up runs once, by a lifespan or by the first request, and puts the per-peer log limit on
the loggers; shutdown closes the REST client and takes the limit off."""

from __future__ import annotations

import logging

import pytest

from gateway.bridge import sdk
from gateway.ratelog import PEER_LOGGERS, PeerLogFilter
from gateway.settings import Settings
from gateway.web.startup import Startup


class StandInRest:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class Connection:
    """What a guarded endpoint reads of its request: the path."""

    def __init__(self, path: str) -> None:
        self.url = type("URL", (), {"path": path})()


def startup(**overrides: str) -> Startup:
    settings = Settings.from_mapping({"PUBLIC_URL": "https://gw.example.com", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                                      "TWILIO_AUTH_TOKEN": "t", "OPENAI_API_KEY": "sk-test", **overrides})
    return Startup(settings, StandInRest())  # type: ignore[arg-type]


def peer_filters() -> list[logging.Filter]:
    return [f for name in PEER_LOGGERS for f in logging.getLogger(name).filters if isinstance(f, PeerLogFilter)]


@pytest.fixture(autouse=True)
def no_filter_left_behind():
    """A start-up without a shutdown leaves its filter on the process's loggers: taken off here,
    so that no later test's lines are limited by this one's."""
    yield
    for name in PEER_LOGGERS:
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, PeerLogFilter)]:
            logger.removeFilter(f)


@pytest.fixture
def prepared(monkeypatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(sdk, "prepare", lambda: calls.append("prepare"))
    return calls


def test_start_up_runs_once(prepared, caplog) -> None:
    caplog.set_level(logging.INFO, "gateway.app")
    s = startup(GATEWAY_INSECURE_SKIP_SIGNATURE="true")
    assert s.run() is True and s.run("again") is False
    assert prepared == ["prepare"] and (s.done, s.ran_by) == (True, "lifespan")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("NOT checked" in m for m in messages) == 1
    assert sum(m.startswith("start-up done (lifespan) in ") for m in messages) == 1


def test_no_insecure_warning_when_signatures_are_checked(prepared, caplog) -> None:
    startup().run()
    assert not any("NOT checked" in r.getMessage() for r in caplog.records)


async def test_the_lifespan_starts_up_then_closes_the_rest_client(prepared) -> None:
    s = startup()
    async with s.lifespan():
        assert s.done and s.rest.closed == 0  # type: ignore[attr-defined]
    assert s.rest.closed == 1 and prepared == ["prepare"]  # type: ignore[attr-defined]


async def test_a_guarded_endpoint_starts_up_on_the_first_request_only(prepared, caplog) -> None:
    s = startup()
    handled: list[str] = []

    async def endpoint(connection: Connection) -> str:
        assert s.done  # start-up ran before the endpoint
        handled.append(connection.url.path)
        return "answer"

    guarded = s.guarded(endpoint)
    assert guarded.__name__ == "endpoint"  # the route's name stays the endpoint's
    assert await guarded(Connection("/phone/healthz")) == "answer"
    assert await guarded(Connection("/phone/twilio/voice")) == "answer"
    assert handled == ["/phone/healthz", "/phone/twilio/voice"] and prepared == ["prepare"]
    assert s.ran_by == "first request: /phone/healthz"
    assert sum("ran on its first request" in r.getMessage() for r in caplog.records) == 1


async def test_after_a_lifespan_a_guarded_endpoint_does_nothing_more(prepared, caplog) -> None:
    s = startup()
    async with s.lifespan():

        async def endpoint(connection: Connection) -> str:
            return "answer"

        assert await s.guarded(endpoint)(Connection("/healthz")) == "answer"
    assert prepared == ["prepare"] and s.ran_by == "lifespan"
    assert not any("first request" in r.getMessage() for r in caplog.records)


async def test_the_per_peer_log_limit_is_on_while_the_gateway_runs(prepared, caplog) -> None:
    caplog.set_level(logging.INFO, "gateway")
    s = startup()
    assert peer_filters() == []
    async with s.lifespan():
        assert peer_filters() == [s.peer_log] * len(PEER_LOGGERS)
        call = logging.getLogger("gateway.call")
        for port in range(10):
            call.warning("%s stream refused before start: %s", f"[peer=203.0.113.9:{port}]", "not JSON")
    assert peer_filters() == []
    messages = [r.getMessage() for r in caplog.records]
    assert sum("stream refused before start" in m for m in messages) == 5  # gateway.ratelog.BURST
    assert "5 log line(s) naming peers were held back by the per-peer limit since the last ones written" in messages

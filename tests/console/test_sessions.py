"""Console session tokens and the login throttle: sans-I/O, with explicit times."""

from __future__ import annotations

import pytest

from gateway.web.console.sessions import LoginThrottle, SessionTokens

NOW = 1_800_000_000.0


def test_a_token_is_valid_until_it_expires() -> None:
    tokens = SessionTokens("the-key", ttl_s=3600)
    token = tokens.issue(NOW)
    assert tokens.valid(token, NOW)
    assert tokens.valid(token, NOW + 3599)
    assert not tokens.valid(token, NOW + 3600)


def test_tokens_are_not_the_key_and_differ_each_login() -> None:
    tokens = SessionTokens("the-key")
    first, second = tokens.issue(NOW), tokens.issue(NOW)
    assert first != second
    assert "the-key" not in first


def test_another_key_or_a_changed_token_is_refused() -> None:
    tokens = SessionTokens("the-key", ttl_s=3600)
    token = tokens.issue(NOW)
    assert not SessionTokens("another-key").valid(token, NOW)  # the API key changed: logged out
    version, expiry, nonce, mac = token.split(".")
    assert not tokens.valid(f"{version}.{int(expiry) + 86400}.{nonce}.{mac}", NOW)  # lengthened
    assert not tokens.valid(f"{version}.{expiry}.{nonce}x.{mac}", NOW)
    flipped = mac[:-1] + ("1" if mac.endswith("0") else "0")
    assert not tokens.valid(f"{version}.{expiry}.{nonce}.{flipped}", NOW)
    assert not tokens.valid(f"v2.{expiry}.{nonce}.{mac}", NOW)


@pytest.mark.parametrize("garbage", [None, "", ".", "v1", "v1...", "v1.x.y.z", "v1.-5.n.m", "a" * 5000,
                                     "v1.99999999999.n." + "0" * 64])
def test_garbage_is_refused(garbage) -> None:
    assert not SessionTokens("the-key").valid(garbage, NOW)


def test_a_logged_out_token_is_refused_and_forgotten_once_expired() -> None:
    tokens = SessionTokens("the-key", ttl_s=60)
    token, other = tokens.issue(NOW), tokens.issue(NOW)
    tokens.revoke(token, NOW + 1)
    assert not tokens.valid(token, NOW + 2)
    assert tokens.valid(other, NOW + 2)
    tokens.revoke("forged", NOW + 2)  # nothing to remember
    later = tokens.issue(NOW + 100)
    tokens.revoke(later, NOW + 101)  # the expired one is dropped from the list
    assert token not in tokens._revoked and later in tokens._revoked


def test_no_key_no_tokens() -> None:
    with pytest.raises(ValueError):
        SessionTokens("")


def test_a_peer_is_refused_after_too_many_wrong_keys_until_its_window_passes() -> None:
    throttle = LoginThrottle(max_failures=3, window_s=300)
    for n in range(1, 4):
        assert throttle.retry_after("198.51.100.7", NOW + n) == 0
        assert throttle.failed("198.51.100.7", NOW + n) == n
    assert throttle.retry_after("198.51.100.7", NOW + 10) == pytest.approx(291)
    assert throttle.retry_after("203.0.113.9", NOW + 10) == 0  # another peer is not affected
    assert throttle.retry_after("198.51.100.7", NOW + 301) == 0  # the window has passed
    assert throttle.failed("198.51.100.7", NOW + 302) == 1  # a new window


def test_the_right_key_forgets_the_failures() -> None:
    throttle = LoginThrottle(max_failures=3, window_s=300)
    throttle.failed("198.51.100.7", NOW)
    throttle.failed("198.51.100.7", NOW + 1)
    throttle.succeeded("198.51.100.7")
    assert len(throttle) == 0
    assert throttle.failed("198.51.100.7", NOW + 2) == 1


def test_peers_remembered_are_bounded() -> None:
    throttle = LoginThrottle(max_failures=3, window_s=300, max_peers=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}", NOW + i / 1000)
    assert len(throttle) == 100

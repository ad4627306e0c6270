"""Owner hints and signed requests between instances (``gateway.web.peers``)."""

from __future__ import annotations

import pytest

from gateway.web.peers import MAX_SKEW_S, SIGNATURE_HEADER, TIME_HEADER, Peers

SECRET = b"deployment secret"
ME = "http://10.0.0.5:8081"


def test_a_hint_names_the_instance_that_signed_it() -> None:
    peers = Peers(SECRET, ME + "/")
    hint = peers.hint()
    assert hint is not None and ME.encode() not in hint.encode()  # encoded, not in clear
    assert Peers(SECRET, "http://10.0.0.9:8081").hinted(hint) == ME  # any instance of the deployment reads it
    assert peers.is_me(peers.hinted(hint))


@pytest.mark.parametrize("hint", [
    Peers(b"another deployment", ME).hint(),  # signed with another secret
    Peers(SECRET, ME).hint()[:-2] + "AA",  # MAC altered
    Peers(SECRET, "http://10.0.0.6:8081").hint().split(".")[0] + "." + Peers(SECRET, ME).hint().split(".")[1],  # URL swapped
    "garbage", "", "!!!.???", "a.b.c",
])
def test_a_hint_this_deployment_did_not_sign_names_nobody(hint: str) -> None:
    assert Peers(SECRET, ME).hinted(hint) is None


def test_a_signed_hint_for_something_that_is_not_an_http_url_names_nobody() -> None:
    tricky = Peers(SECRET, "file:///etc/passwd").hint()
    assert Peers(SECRET, ME).hinted(tricky) is None


def test_a_lone_instance_hands_out_no_hint() -> None:
    peers = Peers(SECRET)
    assert peers.hint() is None and not peers.is_me(ME)


def test_siblings_leave_out_the_instance_itself() -> None:
    peers = Peers(SECRET, ME, [ME + "/", "http://10.0.0.5:8082"])
    assert peers.siblings == ("http://10.0.0.5:8082",)


def test_a_signed_request_verifies_only_as_sent_and_while_fresh() -> None:
    a, b = Peers(SECRET, ME), Peers(SECRET, "http://10.0.0.6:8081")
    body = b'{"x": 1}'
    headers = a.sign("POST", "/internal/v1/held", body, now=1000)
    assert b.verify("POST", "/internal/v1/held", body, headers, now=1000 + MAX_SKEW_S)
    assert not b.verify("POST", "/internal/v1/held", body, headers, now=1001 + MAX_SKEW_S)  # stale
    assert not b.verify("POST", "/internal/v1/held", body, headers, now=999 - MAX_SKEW_S)  # from the future
    assert not b.verify("POST", "/internal/v1/held", b'{"x": 2}', headers, now=1000)
    assert not b.verify("POST", "/internal/v1/callback", body, headers, now=1000)
    assert not b.verify("GET", "/internal/v1/held", body, headers, now=1000)
    assert not Peers(b"other", ME).verify("POST", "/internal/v1/held", body, headers, now=1000)
    assert not b.verify("POST", "/internal/v1/held", body, {TIME_HEADER: "1000"}, now=1000)
    assert not b.verify("POST", "/internal/v1/held", body, {TIME_HEADER: "x", SIGNATURE_HEADER: "y"}, now=1000)


def test_the_key_is_the_deployments_shared_secret() -> None:
    explicit = Peers.derived_from("auth-token", "explicit", instance_url=ME)
    assert Peers.derived_from("other-token", "explicit").hinted(explicit.hint()) == ME
    assert Peers.derived_from("auth-token").hinted(explicit.hint()) is None

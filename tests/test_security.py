import pytest

from gateway.security import CallTokens, InvalidCallToken, TwilioSignatures

SID = "CA" + "1" * 32
PARAMS = {"from": "+15550001111", "to": "+15550002222", "callSid": SID}


def tokens() -> CallTokens:
    return CallTokens.derived_from("auth-token")


def test_token_round_trip_on_another_instance() -> None:
    token = tokens().issue(SID, PARAMS, now=1000, ttl_s=60)
    tokens().verify(token, SID, {**PARAMS, "token": token}, now=1059)  # no shared state


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t, p: (t, "CA" + "2" * 32, p), "does not match"),
        (lambda t, p: (t, SID, {**p, "to": "+19990000000"}), "does not match"),
        (lambda t, p: (t, SID, {**p, "extra": "x"}), "does not match"),
        (lambda t, p: (t[:-2] + "AA", SID, p), "does not match"),
        (lambda t, p: ("v2" + t[2:], SID, p), "malformed"),
        (lambda t, p: ("garbage", SID, p), "malformed"),
        (lambda t, p: ("", SID, p), "no call token"),
        (lambda t, p: (None, SID, p), "no call token"),
    ],
)
def test_token_rejections_say_why(mutate, reason) -> None:
    token = tokens().issue(SID, PARAMS, now=1000, ttl_s=60)
    bad_token, sid, params = mutate(token, PARAMS)
    with pytest.raises(InvalidCallToken, match=reason):
        tokens().verify(bad_token, sid, params, now=1000)


def test_token_expires() -> None:
    token = tokens().issue(SID, PARAMS, now=1000, ttl_s=60)
    with pytest.raises(InvalidCallToken, match="expired"):
        tokens().verify(token, SID, PARAMS, now=1061)


def test_token_from_other_secret_is_refused() -> None:
    token = CallTokens.derived_from("other").issue(SID, PARAMS, now=1000, ttl_s=60)
    with pytest.raises(InvalidCallToken):
        tokens().verify(token, SID, PARAMS, now=1000)
    explicit = CallTokens.derived_from("auth-token", "shared-secret")
    with pytest.raises(InvalidCallToken):
        tokens().verify(explicit.issue(SID, PARAMS, now=1000, ttl_s=60), SID, PARAMS, now=1000)


def test_signatures_with_the_twilio_library() -> None:
    sigs = TwilioSignatures("auth-token")
    url = "https://gw.example.com/twilio/voice"
    form = {"CallSid": SID, "From": "+15550001111"}
    signature = sigs.sign(url, form)
    assert sigs.webhook_valid(url, form, signature)
    assert not sigs.webhook_valid(url, {**form, "From": "+1999"}, signature)  # replay, other params
    assert not sigs.webhook_valid("https://evil.example.com/twilio/voice", form, signature)
    assert not sigs.webhook_valid(url, form, None)
    assert not TwilioSignatures("other").webhook_valid(url, form, signature)
    stream = "wss://gw.example.com/twilio/media"
    assert sigs.stream_valid(stream, sigs.sign(stream, {}))
    assert not sigs.stream_valid(stream, sigs.sign("https://gw.example.com/twilio/media", {}))
    assert not sigs.stream_valid(stream, "")

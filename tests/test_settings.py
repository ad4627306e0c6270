import dataclasses

import pytest

from gateway.audio import AudioMode
from gateway.settings import Settings, SettingsError, read_env_file

BASE = {
    "PUBLIC_URL": "https://gw.example.com/",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "secret",
    "OPENAI_API_KEY": "sk-test",
}


def test_minimal_settings_and_defaults() -> None:
    s = Settings.from_mapping(BASE)
    assert s.public_url == "https://gw.example.com"
    assert s.stream_url == "wss://gw.example.com/twilio/media"
    assert s.public("/twilio/voice") == "https://gw.example.com/twilio/voice"
    assert s.audio_mode is AudioMode.PCM16
    assert s.turn_detection == "semantic_vad" and s.interrupt_response is True
    assert s.mark_interval_ms == 100 and s.insecure_skip_signature is False
    assert s.model_compression == "none"  # deflate costs more CPU than the bandwidth it saves is worth
    assert "secret" not in repr(s) and "sk-test" not in repr(s)


def test_public_url_with_a_path_prefix() -> None:
    s = Settings.from_mapping({**BASE, "PUBLIC_URL": "http://127.0.0.1:8080/gw"})
    assert s.stream_url == "ws://127.0.0.1:8080/gw/twilio/media"
    assert s.public("/twilio/voice") == "http://127.0.0.1:8080/gw/twilio/voice"


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_mapping(
            {
                "PUBLIC_URL": "gw.example.com",
                "GATEWAY_AUDIO_MODE": "opus",
                "GATEWAY_MARK_INTERVAL_MS": "500",
                "GATEWAY_INTERRUPT_RESPONSE": "maybe",
                "GATEWAY_MODEL_COMPRESSION": "gzip",
                "GATEWAY_AGENT": "not a path",
                "OPENAI_REALTIME_URL": "http://x",
            }
        )
    text = str(info.value)
    for name in (
        "PUBLIC_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "GATEWAY_AUDIO_MODE",
        "GATEWAY_MARK_INTERVAL_MS", "GATEWAY_INTERRUPT_RESPONSE", "GATEWAY_AGENT", "OPENAI_REALTIME_URL",
        "GATEWAY_MODEL_COMPRESSION",
    ):
        assert name in text
    assert len(info.value.problems) == 9


def test_api_key_required_only_for_the_real_model() -> None:
    without_key = {k: v for k, v in BASE.items() if k != "OPENAI_API_KEY"}
    with pytest.raises(SettingsError, match="OPENAI_API_KEY"):
        Settings.from_mapping(without_key)
    local = Settings.from_mapping({**without_key, "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime"})
    assert local.openai_api_key is None


def test_env_file_is_read_and_environment_wins(tmp_path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nexport PUBLIC_URL='https://file.example.com'\nTWILIO_ACCOUNT_SID=ACfile\n"
        'TWILIO_AUTH_TOKEN="tok"\nOPENAI_API_KEY=k\nGATEWAY_AUDIO_MODE=g711_ulaw\n\nnot a line\n'
    )
    assert read_env_file(env_file)["PUBLIC_URL"] == "https://file.example.com"
    s = Settings.from_env({"GATEWAY_AUDIO_MODE": "pcm16"}, env_file=env_file)
    assert s.public_url == "https://file.example.com"
    assert s.twilio_auth_token == "tok"
    assert s.audio_mode is AudioMode.PCM16


def test_every_setting_is_documented_in_env_example() -> None:
    import re
    from pathlib import Path

    source = Path(__file__).resolve().parent.parent / "gateway" / "settings.py"
    names = set(re.findall(r'"((?:GATEWAY|OPENAI|TWILIO|PUBLIC)_[A-Z0-9_]+)"', source.read_text()))
    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.M))
    assert names and names <= documented, sorted(names - documented)


def test_transfer_targets_are_parsed_and_strictly_matched() -> None:
    s = Settings.from_mapping({**BASE, "GATEWAY_TRANSFER_TARGETS": "Sales=+15551230000, desk=sip:desk@pbx.example.com"})
    assert s.transfer_target("sales") == "+15551230000"
    assert s.transfer_target("+15551230000") == "+15551230000"
    assert s.transfer_target("desk") == "sip:desk@pbx.example.com"
    assert s.transfer_target("+15559999999") is None
    assert s.transfer_target("sales; +1900") is None
    with pytest.raises(SettingsError, match="GATEWAY_TRANSFER_TARGETS"):
        Settings.from_mapping({**BASE, "GATEWAY_TRANSFER_TARGETS": "sales=5551230000"})


def test_env_file_is_read_as_python_dotenv_reads_it(tmp_path) -> None:
    # Issue 10: an inline comment was kept in the value (and made GATEWAY_LOG_LEVEL invalid).
    env_file = tmp_path / ".env"
    env_file.write_text(
        "PUBLIC_URL=https://file.example.com  # where Twilio reaches us\n"
        "TWILIO_ACCOUNT_SID=ACfile\nTWILIO_AUTH_TOKEN='tok # not a comment'\nOPENAI_API_KEY=k\n"
        'GATEWAY_GREETING="Say hi." # short\n'
        "GATEWAY_LOG_LEVEL=DEBUG # verbose\n"
        'export GATEWAY_INSTRUCTIONS="Line one.\\nSay \\"hello\\"."\n'
        "GATEWAY_VOICE=ash#no-space-is-not-a-comment\n"
        "GATEWAY_FALLBACK_SAY='single \\n stays'\n"
    )
    values = read_env_file(env_file)
    assert values["GATEWAY_GREETING"] == "Say hi."
    assert values["TWILIO_AUTH_TOKEN"] == "tok # not a comment"
    assert values["GATEWAY_INSTRUCTIONS"] == 'Line one.\nSay "hello".'
    assert values["GATEWAY_VOICE"] == "ash#no-space-is-not-a-comment"
    assert values["GATEWAY_FALLBACK_SAY"] == "single \\n stays"
    s = Settings.from_env({}, env_file=env_file)
    assert s.public_url == "https://file.example.com"
    assert s.greeting == "Say hi."
    assert s.log_level == "DEBUG"


def test_cli_reads_env_file_settings_with_the_same_parser(tmp_path, monkeypatch) -> None:
    from gateway import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEWAY_API_KEY", raising=False)
    (tmp_path / ".env").write_text('GATEWAY_API_KEY="k3y" # for gateway call\n')
    assert cli._setting("GATEWAY_API_KEY") == "k3y"
    monkeypatch.setenv("GATEWAY_API_KEY", "from-env")
    assert cli._setting("GATEWAY_API_KEY") == "from-env"


SECONDS = [
    "GATEWAY_SILENCE_CHECK_IN_S", "GATEWAY_SILENCE_GIVE_UP_S", "GATEWAY_MAX_CALL_S",
    "GATEWAY_SESSION_ROLLOVER_S", "GATEWAY_START_TIMEOUT_S", "GATEWAY_MODEL_CONNECT_BUDGET_S",
    "GATEWAY_TOOL_TIMEOUT_S", "GATEWAY_DRAIN_TIMEOUT_S", "GATEWAY_HOLD_AFTER_S",
]


@pytest.mark.parametrize("name", SECONDS)
def test_durations_in_seconds_take_decimals(name) -> None:
    # Issue 10: GATEWAY_SILENCE_CHECK_IN_S=7.5 was refused ("must be a whole number").
    s = Settings.from_mapping({**BASE, name: "7.5"})
    field = name.removeprefix("GATEWAY_").lower()
    assert getattr(s, field) == 7.5
    assert isinstance(Settings.from_mapping({**BASE, name: "8"}).__getattribute__(field), float)
    for bad in ("nan", "inf", "soon", "-1"):
        with pytest.raises(SettingsError, match=name):
            Settings.from_mapping({**BASE, name: bad})


def test_every_float_field_is_read_as_a_float_and_defaults_keep_their_type() -> None:
    defaults = Settings.from_mapping(BASE)
    floats = {f.name for f in dataclasses.fields(Settings) if f.type in ("float", float)}
    assert floats == {name.removeprefix("GATEWAY_").lower() for name in SECONDS}
    for name in floats:
        assert isinstance(getattr(defaults, name), float), name


def test_call_token_ttl_stays_whole_seconds() -> None:
    with pytest.raises(SettingsError, match="GATEWAY_CALL_TOKEN_TTL_S: must be a whole number"):
        Settings.from_mapping({**BASE, "GATEWAY_CALL_TOKEN_TTL_S": "60.5"})


@pytest.mark.parametrize("value", ["http://10.0.0.5", "http://10.0.0.5:8081/path", "ftp://h:1", "10.0.0.5:8081",
                                   "http://h:8081?x=1", "http://h:99999"])
def test_the_instance_url_must_be_an_http_address_with_a_port(value: str) -> None:
    with pytest.raises(SettingsError, match="GATEWAY_INSTANCE_URL"):
        Settings.from_mapping({**BASE, "GATEWAY_INSTANCE_URL": value})


def test_the_instance_url() -> None:
    assert Settings.from_mapping(BASE).instance_url is None
    s = Settings.from_mapping({**BASE, "GATEWAY_INSTANCE_URL": "http://10.0.0.5:8081/"})
    assert s.instance_url == "http://10.0.0.5:8081/"

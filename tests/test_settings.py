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
                "GATEWAY_AGENT": "not a path",
                "OPENAI_REALTIME_URL": "http://x",
            }
        )
    text = str(info.value)
    for name in (
        "PUBLIC_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "GATEWAY_AUDIO_MODE",
        "GATEWAY_MARK_INTERVAL_MS", "GATEWAY_INTERRUPT_RESPONSE", "GATEWAY_AGENT", "OPENAI_REALTIME_URL",
    ):
        assert name in text
    assert len(info.value.problems) == 8


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

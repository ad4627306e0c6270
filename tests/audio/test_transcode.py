import pytest

from gateway.audio import AudioMode, InboundTranscoder, OutboundTranscoder, pcm16_to_ulaw
from gateway.audio.measure import amplitude_at, db, from_pcm16, to_pcm16, tone
from gateway.audio.g711 import ulaw_to_pcm16


def frames(data: bytes, size: int):
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_audio_mode_values_match_sdk_format_names() -> None:
    assert AudioMode("pcm16").model_rate == 24000
    assert AudioMode("g711_ulaw").model_rate == 8000
    assert AudioMode.PCM16.model_bytes_per_ms == 48
    assert AudioMode.G711_ULAW.model_bytes_per_ms == 8
    assert str(AudioMode.PCM16) == "pcm16"


def test_g711_mode_passes_audio_through_untouched() -> None:
    payload = bytes(range(160))
    inbound, outbound = InboundTranscoder(AudioMode.G711_ULAW), OutboundTranscoder(AudioMode.G711_ULAW)
    assert inbound.convert(payload) == payload
    assert outbound.convert(payload) == payload
    assert inbound.flush() == outbound.flush() == b""


def test_inbound_pcm16_turns_twilio_frames_into_a_24k_tone() -> None:
    ulaw = pcm16_to_ulaw(to_pcm16(tone(1000, 8000, 2, 12000)))
    t = InboundTranscoder(AudioMode.PCM16)
    out = b"".join(t.convert(f) for f in frames(ulaw, 160)) + t.flush()
    assert len(out) == 2 * 3 * len(ulaw)  # 3x the samples, two bytes each
    y = from_pcm16(out)
    assert abs(db(amplitude_at(y, 24000, 1000) / 12000)) < 0.2
    # Caller frames are 20 ms; after the 1.875 ms fill-up each yields exactly 20 ms at 24 kHz.
    t2 = InboundTranscoder(AudioMode.PCM16)
    sizes = [len(t2.convert(f)) for f in frames(ulaw[:1600], 160)]
    assert sizes[0] == 960 - 90 and set(sizes[1:]) == {960}


def test_outbound_pcm16_speech_band_passes_and_aliases_are_rejected() -> None:
    t = OutboundTranscoder(AudioMode.PCM16)
    model = to_pcm16(tone(1000, 24000, 2, 8000) + tone(6000, 24000, 2, 8000))
    # The model's deltas arrive in arbitrary sizes, odd ones included.
    out = b"".join(t.convert(c) for c in frames(model, 4801)) + t.flush()
    assert len(out) == 16000
    y = from_pcm16(ulaw_to_pcm16(out))
    assert abs(db(amplitude_at(y, 8000, 1000) / 8000)) < 0.3
    # 6 kHz would fold to 2 kHz; after the filter and mu-law it stays far below audibility.
    assert db(amplitude_at(y, 8000, 2000) / 8000) < -55


def test_outbound_reset_drops_the_tail_of_an_interrupted_response() -> None:
    t = OutboundTranscoder(AudioMode.PCM16)
    t.convert(to_pcm16(tone(500, 24000, 0.1, 8000)))
    t.reset()
    assert t.flush() == b""


@pytest.mark.parametrize("mode", list(AudioMode))
def test_outbound_durations_are_preserved_per_response(mode: AudioMode) -> None:
    """What the model sends in ms is what the caller gets in ms: truncation depends on it."""
    t = OutboundTranscoder(mode)
    ms = 1234
    model_audio = bytes(ms * mode.model_bytes_per_ms)
    out = b"".join(t.convert(c) for c in frames(model_audio, 999)) + t.flush()
    assert len(out) == ms * 8

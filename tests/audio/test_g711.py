import numpy as np
import pytest

from gateway.audio.g711 import ULAW_SILENCE, pcm16_to_ulaw, ulaw_to_pcm16
from gateway.audio.measure import from_pcm16, to_pcm16


def test_known_codewords() -> None:
    # ITU-T G.711: 0xFF and 0x7F are +0 and -0, 0x80 / 0x00 the largest magnitudes.
    assert from_pcm16(ulaw_to_pcm16(bytes([ULAW_SILENCE, 0x7F, 0x80, 0x00]))).tolist() == [
        0, 0, 32124, -32124,
    ]


def test_every_codeword_survives_decode_encode() -> None:
    codes = bytes(range(256))
    back = pcm16_to_ulaw(ulaw_to_pcm16(codes))
    # -0 (0x7F) decodes to 0, which encodes as +0 (0xFF); every other code is its own image.
    expected = bytes(ULAW_SILENCE if c == 0x7F else c for c in codes)
    assert back == expected


def test_encode_error_is_within_the_segment_step() -> None:
    x = np.arange(-32768, 32768, 7, dtype=np.float64)
    y = from_pcm16(ulaw_to_pcm16(pcm16_to_ulaw(to_pcm16(x))))
    # mu-law is ~logarithmic: the step is at most 1/16 of the value's magnitude (plus a floor).
    assert np.all(np.abs(y - x) <= np.maximum(np.abs(x) / 16, 8) + 132)


@pytest.mark.parametrize("n", [0, 1, 160, 161])
def test_lengths(n: int) -> None:
    assert len(ulaw_to_pcm16(bytes(n))) == 2 * n
    assert len(pcm16_to_ulaw(bytes(2 * n))) == n

import pytest

from gateway.audio.framing import FRAME_BYTES, Framer


def test_frames_are_whole_and_in_order() -> None:
    f = Framer()
    data = bytes(i % 251 for i in range(1000))
    out = f.push(data[:100]) + f.push(data[100:700]) + f.push(data[700:])
    assert [len(x) for x in out] == [FRAME_BYTES] * 6
    assert b"".join(out) + f.flush() == data
    assert f.pending == 0


def test_flush_returns_the_remainder_unpadded_and_reset_drops_it() -> None:
    f = Framer(10)
    assert f.push(b"abc") == []
    assert f.pending == 3
    assert f.flush() == b"abc"
    f.push(b"xyz")
    f.reset()
    assert f.flush() == b""


def test_frame_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Framer(0)

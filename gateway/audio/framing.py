"""Cutting a stream of mu-law bytes into Twilio-sized frames.

Twilio plays outbound media of any size, but fixed 20 ms frames (160 bytes, what Twilio
itself sends) keep playback accounting and mark cadence on a regular grid.
"""

from __future__ import annotations

from gateway.audio.g711 import ULAW_BYTES_PER_MS

FRAME_MS = 20
FRAME_BYTES = FRAME_MS * ULAW_BYTES_PER_MS  # 160


class Framer:
    """Accumulates bytes and hands out whole frames; ``flush`` returns the short remainder
    unpadded (padding would add silence the model never said and skew playback accounting)."""

    __slots__ = ("frame_bytes", "_pending")

    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        if frame_bytes <= 0:
            raise ValueError("frame_bytes must be positive")
        self.frame_bytes = frame_bytes
        self._pending = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a whole frame."""
        return len(self._pending)

    def push(self, data: bytes) -> list[bytes]:
        pending = self._pending
        pending += data
        size = self.frame_bytes
        whole = len(pending) - len(pending) % size
        if not whole:
            return []
        frames = [bytes(pending[i : i + size]) for i in range(0, whole, size)]
        del pending[:whole]
        return frames

    def push_whole(self, data: bytes) -> bytes:
        """Like ``push``, but every whole frame in one ``bytes`` (empty if none): for a sender
        that puts several frames in one message."""
        pending = self._pending
        if not pending and len(data) % self.frame_bytes == 0:
            return data  # the usual case: whole frames in, nothing held back
        pending += data
        whole = len(pending) - len(pending) % self.frame_bytes
        if not whole:
            return b""
        out = bytes(pending[:whole])
        del pending[:whole]
        return out

    def flush(self) -> bytes:
        rest = bytes(self._pending)
        self._pending.clear()
        return rest

    def reset(self) -> None:
        self._pending.clear()

"""Errors of the Twilio Media Streams layer.

Two kinds, kept apart on purpose (as h11 does with Local/Remote protocol errors):

- ``ProtocolError``: the *peer* sent something we cannot accept (bad JSON, a missing or
  mistyped field, a message out of order). The endpoint decides what to do: log it with the
  call's ids and carry on, or close the WebSocket.
- ``StreamStateError``: *our* code asked the stream to do something it cannot do in its current
  state (send audio before ``start``). That is a bug in the caller, so it must not be swallowed by
  an ``except ProtocolError`` around the receive loop.
"""

from __future__ import annotations

__all__ = ["ProtocolError", "StreamStateError"]


class ProtocolError(Exception):
    """A message from the peer is malformed or out of order.

    ``str(error)`` says what was wrong (for example ``"media message: media.payload is not valid
    base64"``); ``event`` is the message's ``event`` value when it could be read, else ``None``.
    """

    def __init__(self, message: str, event: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.event = event


class StreamStateError(RuntimeError):
    """A ``MediaStream`` was asked to send something its state does not allow."""

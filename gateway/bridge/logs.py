"""Log lines of a call: each carries the call SID and the stream SID."""

from __future__ import annotations

import logging


class CallLog(logging.LoggerAdapter):
    """Every line of a call carries its call SID and stream SID, in the text and as ``extra``
    fields (``call_sid``, ``stream_sid``) for structured handlers."""

    def process(self, msg, kwargs):
        extra = self.extra or {}
        kwargs.setdefault("extra", {}).update(extra)
        return f"[call={extra.get('call_sid', '-')} stream={extra.get('stream_sid', '-')}] {msg}", kwargs


def short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."

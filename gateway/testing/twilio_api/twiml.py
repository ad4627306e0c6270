"""The TwiML a simulated call runs, as a list of verbs.

Only what the fake acts on is read: ``<Connect><Stream>`` (through the caller simulator's own
``parse_stream_twiml``, so both read a stream the same way), ``<Dial>`` and its targets,
``<Redirect>``, ``<Hangup>`` / ``<Reject>``. Every other verb is kept by name only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from gateway.testing.caller.twiml import StreamInstructions, parse_response, parse_stream_twiml

__all__ = ["Verb", "parse_verbs"]

#: The nouns of ``<Dial>`` whose text is already an address (a number, a ``sip:`` URI).
_ADDRESS_NOUNS = {"Number", "Sip"}


@dataclass(frozen=True)
class Verb:
    """One verb of a ``<Response>``.

    ``stream``: for ``<Connect>``, its ``<Stream>`` (None if it connects to something else);
    ``targets``: for ``<Dial>``, whom it dials (``+1555...``, ``sip:...``, ``client:alice``,
    ``conference:room``); ``url`` / ``method``: for ``<Redirect>``.
    """

    name: str
    stream: StreamInstructions | None = None
    targets: tuple[str, ...] = ()
    url: str | None = None
    method: str = "POST"


def parse_verbs(twiml: str) -> list[Verb]:
    """The verbs of a TwiML document, in order. Raises ``TwimlError`` for what Twilio could
    not parse (error 12100, "Document parse failure")."""
    return [_verb(element) for element in parse_response(twiml)]


def _verb(element: ET.Element) -> Verb:
    if element.tag == "Connect":
        return Verb("Connect", stream=_stream(element))
    if element.tag == "Dial":
        return Verb("Dial", targets=_dial_targets(element))
    if element.tag == "Redirect":
        return Verb("Redirect", url=(element.text or "").strip(), method=element.get("method", "POST").upper())
    return Verb(element.tag)


def _stream(connect: ET.Element) -> StreamInstructions | None:
    if connect.find("Stream") is None:
        return None  # <Connect><Room>, <Conversation>, ...: not simulated
    document = "<Response>" + ET.tostring(connect, encoding="unicode") + "</Response>"
    return parse_stream_twiml(document)


def _dial_targets(dial: ET.Element) -> tuple[str, ...]:
    text = (dial.text or "").strip()
    targets = [text] if text else []
    for noun in dial:
        value = (noun.text or "").strip()
        targets.append(value if noun.tag in _ADDRESS_NOUNS else f"{noun.tag.lower()}:{value}")
    return tuple(targets)

"""The console's files: HTML pages, a style sheet and plain ES modules, shipped in the package
(``gateway/web/console/static``) and served as they are; no build step.

They are read once, when the gateway is built, so serving one never touches the disk on the
event loop. The HTML pages are templates with one slot, ``$base``: where the console lives
(``<base href>``), so that every link in them is relative and the console works under a mount
path (docs/mounting.md). The pages carry no data: the scripts fetch it as JSON and put it in
the page as text (never as HTML), so a caller's number or words cannot become markup.
"""

from __future__ import annotations

import html
import importlib.resources
import string
from dataclasses import dataclass

__all__ = ["Asset", "Assets", "CONTENT_SECURITY_POLICY"]

#: The pages load only the console's own files; no inline script or style, no frames, forms
#: post only here. https://developer.mozilla.org/en-US/docs/Web/HTTP/Headers/Content-Security-Policy
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'self'; "
                           "frame-ancestors 'none'")

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str


class Assets:
    """The files of ``static/``: ``asset(name)`` for the style sheet and scripts, ``page(name,
    base=..., **slots)`` for an HTML page filled in."""

    def __init__(self) -> None:
        self._files: dict[str, Asset] = {}
        self._pages: dict[str, string.Template] = {}
        for entry in importlib.resources.files(__package__).joinpath("static").iterdir():
            suffix = "." + entry.name.rpartition(".")[2]
            if not entry.is_file() or suffix not in _TYPES:
                continue
            if suffix == ".html":
                self._pages[entry.name] = string.Template(entry.read_text(encoding="utf-8"))
            else:
                self._files[entry.name] = Asset(entry.read_bytes(), _TYPES[suffix])

    def asset(self, name: str) -> Asset | None:
        return self._files.get(name)

    def page(self, name: str, *, base: str, **slots: str) -> bytes:
        """The page with ``$base`` and each slot filled in, HTML-escaped."""
        values = {key: html.escape(value) for key, value in {"base": base, **slots}.items()}
        return self._pages[name].safe_substitute(values).encode()

"""A tiny RGB canvas on a numpy array, with anti-aliased text and a PNG encoder.

Just enough to draw the demo's ``timeline.png`` without matplotlib or Pillow: rectangles
(solid, alpha-blended, hatched), horizontal and vertical lines (optionally dashed), alpha
masks, and text from a pre-rendered DejaVu Sans atlas (``font_atlas.npz``, made by
``tools/make_font_atlas.py``; licence in ``FONT-LICENSE.txt``).

Coordinates are integer pixels, x to the right and y down from the top-left corner;
rectangles are half-open (``x0 <= x < x1``); everything is clipped to the canvas, so drawing
partly or wholly off the canvas is fine.
"""

from __future__ import annotations

import functools
import io
import struct
import unicodedata
import zlib
from dataclasses import dataclass
from importlib import resources

import numpy as np

Color = tuple[int, int, int]

ELLIPSIS = "\u2026"
#: The atlas's fonts: (bold, pixel size) -> name in ``font_atlas.npz``.
_FONTS = {
    (False, 11): "regular11",
    (False, 14): "regular14",
    (True, 14): "bold14",
    (True, 18): "bold18",
}


@dataclass(frozen=True, eq=False)
class Font:
    """One style and size of the atlas: glyph coverage and metrics."""

    alpha: np.ndarray  # uint8 (line_height, total width): coverage of every glyph, side by side
    glyphs: np.ndarray  # int32 (N, 3): atlas column, ink width, left bearing
    advance: np.ndarray  # float32 (N,)
    index: dict[str, int]  # character -> row of glyphs/advance
    ascent: int
    descent: int

    @property
    def line_height(self) -> int:
        return self.ascent + self.descent

    def clean(self, s: str) -> str:
        """``s`` with only characters the atlas has: accents dropped (é -> e), line breaks and
        tabs to spaces, anything else to ``?``."""
        s = str(s)
        if set(s).issubset(self.index):
            return s
        out = []
        for ch in s:
            if ch in self.index:
                out.append(ch)
            elif ch in "\t\r\n\v\f":
                out.append(" ")
            elif not unicodedata.combining(ch):  # a lone combining mark is dropped
                parts = [
                    c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
                ]
                ok = parts and all(c in self.index for c in parts)
                out.append("".join(parts) if ok else "?")
        return "".join(out)

    def _pens(self, s: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``s``'s glyphs and the pen position before each, plus the end (``len+1``)."""
        rows = np.fromiter((self.index[ch] for ch in s), np.int64, len(s))
        pens = np.concatenate([[0.0], np.cumsum(self.advance[rows], dtype=np.float64)])
        return rows, pens

    def width(self, s: str) -> int:
        """Advance width of ``s`` in pixels (where the next text would start)."""
        s = self.clean(s)
        return round(float(self.advance[[self.index[ch] for ch in s]].sum())) if s else 0

    def fit(self, s: str, max_width: float) -> str:
        """``s``, or its longest prefix that fits ``max_width`` followed by an ellipsis ("" if
        not even one character and the ellipsis fit)."""
        s = self.clean(s)
        if self.width(s) <= max_width:
            return s
        room = max_width - float(self.advance[self.index[ELLIPSIS]])
        if room < 0:
            return ""
        _, pens = self._pens(s)
        n = int(np.searchsorted(pens, room + 0.5, side="right")) - 1  # longest prefix within room
        prefix = s[: max(n, 0)].rstrip()
        return prefix + ELLIPSIS if prefix else ""

    def render(self, s: str) -> tuple[np.ndarray, int]:
        """Coverage of ``s`` as uint8 (line_height, w), and the x offset of its column 0 from
        the pen start (negative when the first glyph overhangs to the left)."""
        s = self.clean(s)
        if not s:
            return np.zeros((self.line_height, 0), np.uint8), 0
        rows, pens = self._pens(s)
        cols, widths, lefts = self.glyphs[rows].T
        xs = np.rint(pens[:-1] + lefts).astype(np.int64)
        lo = min(int(xs.min()), 0)
        hi = max(int((xs + widths).max()), int(np.rint(pens[-1])))
        out = np.zeros((self.line_height, hi - lo), np.uint8)
        for x, col, w in zip((xs - lo).tolist(), cols.tolist(), widths.tolist()):
            if w:
                np.maximum(out[:, x : x + w], self.alpha[:, col : col + w], out=out[:, x : x + w])
        return out, lo


@functools.cache
def _atlas() -> dict[str, np.ndarray]:
    data = resources.files(__package__ or "gateway.demo").joinpath("font_atlas.npz").read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@functools.cache
def font(size: int = 11, bold: bool = False) -> Font:
    """The atlas font of that style nearest to ``size`` pixels (regular: 11, 14; bold: 14, 18)."""
    sizes = [s for b, s in _FONTS if b == bool(bold)]
    best = min(sizes, key=lambda s: (abs(s - size), s))
    name = _FONTS[(bool(bold), best)]
    atlas = _atlas()
    ascent, descent, _ = (int(v) for v in atlas[f"{name}.metrics"])
    return Font(
        alpha=atlas[f"{name}.alpha"],
        glyphs=atlas[f"{name}.glyphs"],
        advance=atlas[f"{name}.advance"],
        index={chr(cp): i for i, cp in enumerate(atlas["codepoints"].tolist())},
        ascent=ascent,
        descent=descent,
    )


def text_width(s: str, size: int = 11, bold: bool = False) -> int:
    """Width in pixels of ``s`` drawn with ``Canvas.text`` at this size."""
    return font(size, bold).width(s)


class Canvas:
    """An RGB image in ``pixels``: uint8 (height, width, 3)."""

    def __init__(self, width: int, height: int, background: Color = (255, 255, 255)) -> None:
        self.pixels = np.empty((max(int(height), 1), max(int(width), 1), 3), np.uint8)
        self.pixels[:] = background

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    def _clip(self, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        h, w = self.pixels.shape[:2]
        return (
            min(max(int(x0), 0), w),
            min(max(int(y0), 0), h),
            min(max(int(x1), 0), w),
            min(max(int(y1), 0), h),
        )

    def fill_rect(self, x0: float, y0: float, x1: float, y1: float, color: Color) -> None:
        x0, y0, x1, y1 = self._clip(x0, y0, x1, y1)
        if x0 < x1 and y0 < y1:
            self.pixels[y0:y1, x0:x1] = color

    def blend_rect(
        self, x0: float, y0: float, x1: float, y1: float, color: Color, alpha: float
    ) -> None:
        """Fill with ``color`` at opacity ``alpha`` (0..1) over what is there."""
        x0, y0, x1, y1 = self._clip(x0, y0, x1, y1)
        if x0 < x1 and y0 < y1:
            self.blend(x0, y0, np.full((y1 - y0, x1 - x0), float(alpha), np.float32), color)

    def hatch_rect(
        self, x0: float, y0: float, x1: float, y1: float, color: Color, spacing: int = 6
    ) -> None:
        """Diagonal hatching (lines rising to the right, ``spacing`` pixels apart)."""
        x0, y0, x1, y1 = self._clip(x0, y0, x1, y1)
        if x0 < x1 and y0 < y1:
            yy, xx = np.ogrid[y0:y1, x0:x1]
            self.pixels[y0:y1, x0:x1][(xx + yy) % max(int(spacing), 2) == 0] = color

    def hline(
        self,
        x0: float,
        x1: float,
        y: float,
        color: Color,
        thickness: int = 1,
        dash: tuple[int, int] | None = None,
    ) -> None:
        """A horizontal line from ``x0`` to ``x1`` (exclusive), rows ``y .. y+thickness-1``;
        ``dash=(on, off)`` in pixels."""
        cx0, cy0, cx1, cy1 = self._clip(x0, y, x1, int(y) + thickness)
        if cx0 >= cx1 or cy0 >= cy1:
            return
        xs = np.arange(cx0, cx1)
        if dash:
            xs = xs[(xs - int(x0)) % max(sum(dash), 1) < dash[0]]
        self.pixels[cy0:cy1, xs] = color

    def vline(
        self,
        x: float,
        y0: float,
        y1: float,
        color: Color,
        thickness: int = 1,
        dash: tuple[int, int] | None = None,
    ) -> None:
        """A vertical line from ``y0`` to ``y1`` (exclusive), columns ``x .. x+thickness-1``."""
        cx0, cy0, cx1, cy1 = self._clip(x, y0, int(x) + thickness, y1)
        if cx0 >= cx1 or cy0 >= cy1:
            return
        ys = np.arange(cy0, cy1)
        if dash:
            ys = ys[(ys - int(y0)) % max(sum(dash), 1) < dash[0]]
        self.pixels[ys, cx0:cx1] = color

    def blend(self, x: int, y: int, alpha: np.ndarray, color: Color) -> None:
        """Paint ``color`` through a coverage mask placed with its top-left at (x, y): uint8
        (0..255) or float (0..1); full coverage gives exactly ``color``."""
        h, w = alpha.shape
        x, y = int(x), int(y)
        x0, y0, x1, y1 = self._clip(x, y, x + w, y + h)
        if x0 >= x1 or y0 >= y1:
            return
        a = alpha[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
        if alpha.dtype == np.uint8:
            a /= 255.0
        region = self.pixels[y0:y1, x0:x1].astype(np.float32)
        region += (np.asarray(color, np.float32) - region) * a[..., None]
        self.pixels[y0:y1, x0:x1] = np.rint(region).astype(np.uint8)

    def text(
        self, x: float, y: float, s: str, color: Color, size: int = 11, bold: bool = False
    ) -> int:
        """Draw ``s`` with its line box's top-left at (x, y); returns its advance width.
        Characters the atlas lacks are drawn as ``?`` (accents are dropped first)."""
        f = font(size, bold)
        coverage, offset = f.render(s)
        if coverage.size:
            self.blend(round(x) + offset, round(y), coverage, color)
        return f.width(s)

    def to_png(self) -> bytes:
        return encode_png(self.pixels)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG (8-bit RGB, not interlaced) of uint8 (height, width, 3) pixels. Each row gets the
    filter (None, Sub or Up) with the smallest sum of absolute signed bytes, as libpng does."""
    h, w, _ = pixels.shape
    raw = np.ascontiguousarray(pixels, np.uint8).reshape(h, w * 3)
    sub = raw.copy()
    sub[:, 3:] -= raw[:, :-3]
    up = raw.copy()
    up[1:] -= raw[:-1]
    candidates = np.stack([raw, sub, up])
    cost = np.abs(candidates.view(np.int8).astype(np.int32)).sum(axis=2)
    choice = cost.argmin(axis=0)
    rows = candidates[choice, np.arange(h)]
    data = np.concatenate([choice.astype(np.uint8)[:, None], rows], axis=1)
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit truecolour
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(data.tobytes(), 6)),
            _chunk(b"IEND", b""),
        ]
    )

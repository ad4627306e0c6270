#!/usr/bin/env python3
"""Generate the demo chart's bitmap font: ``gateway/demo/font_atlas.npz``.

Development-time only: the atlas is committed, and ``gateway.demo.raster`` reads it with
numpy alone (no Pillow, no FreeType at run time). To regenerate::

    python3 -m venv /tmp/fontgen && /tmp/fontgen/bin/pip install pillow numpy
    /tmp/fontgen/bin/python tools/make_font_atlas.py             # writes gateway/demo/font_atlas.npz
    /tmp/fontgen/bin/python tools/make_font_atlas.py --out x.npz # somewhere else

Needs the DejaVu Sans fonts (Debian: ``apt-get install fonts-dejavu-core``; the committed
atlas was made from fonts-dejavu-core 2.37 with Pillow 13.0). Their licence (Bitstream Vera,
DejaVu changes public domain) allows redistributing glyphs rendered from them; the notice is
``gateway/demo/FONT-LICENSE.txt``.

What is in the file (every array plain, ``np.load(..., allow_pickle=False)`` reads it):

``codepoints``  int32 (N,): the characters, printable ASCII 32..126 then a few extras
                (typographic quotes, dashes, ellipsis, arrows) common in transcripts.
For each font ``F`` (``regular11``, ``regular14``, ``bold14``, ``bold18``: style and pixel size):

``F.alpha``     uint8 (H, total width): every glyph's anti-aliased coverage (0..255) side by
                side; H is the font's line height (ascent + descent), row 0 is the line top.
``F.glyphs``    int32 (N, 3): per character, its column in ``F.alpha``, its ink width, and
                its left bearing (ink x offset from the pen position, may be negative).
``F.advance``   float32 (N,): how far the pen moves after the character, in pixels.
``F.metrics``   int32 (3,): ascent, descent, pixel size.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIR = pathlib.Path("/usr/share/fonts/truetype/dejavu")
FONTS = {  # name: (file, pixel size)
    "regular11": ("DejaVuSans.ttf", 11),
    "regular14": ("DejaVuSans.ttf", 14),
    "bold14": ("DejaVuSans-Bold.ttf", 14),
    "bold18": ("DejaVuSans-Bold.ttf", 18),
}
EXTRAS = "\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u2192\u2190\u00b7\u2022\u00d7\u00b0"
CODEPOINTS = [*range(32, 127), *map(ord, EXTRAS)]
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent.parent / "gateway/demo/font_atlas.npz"


def render_font(path: pathlib.Path, size: int) -> dict[str, np.ndarray]:
    font = ImageFont.truetype(str(path), size)
    ascent, descent = font.getmetrics()
    height = ascent + descent
    strips: list[np.ndarray] = []
    glyphs = np.zeros((len(CODEPOINTS), 3), np.int32)
    advance = np.zeros(len(CODEPOINTS), np.float32)
    column = 0
    for i, cp in enumerate(CODEPOINTS):
        ch = chr(cp)
        advance[i] = font.getlength(ch)
        left, _, right, _ = font.getbbox(ch, anchor="ls")
        pad = 2  # render wider than the bounding box, then trim to the columns with ink
        image = Image.new("L", (right - left + 2 * pad, height), 0)
        ImageDraw.Draw(image).text((pad - left, ascent), ch, fill=255, font=font, anchor="ls")
        cell = np.asarray(image, np.uint8)
        ink = np.flatnonzero(cell.max(axis=0))
        if ink.size == 0:  # space
            glyphs[i] = (column, 0, 0)
            continue
        first, last = int(ink[0]), int(ink[-1])
        strip = cell[:, first : last + 1]
        glyphs[i] = (column, strip.shape[1], left + first - pad)
        strips.append(strip)
        column += strip.shape[1]
    alpha = np.concatenate(strips, axis=1) if strips else np.zeros((height, 0), np.uint8)
    return {
        "alpha": alpha,
        "glyphs": glyphs,
        "advance": advance,
        "metrics": np.array([ascent, descent, size], np.int32),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    arrays: dict[str, np.ndarray] = {"codepoints": np.array(CODEPOINTS, np.int32)}
    for name, (file, size) in FONTS.items():
        for key, value in render_font(FONT_DIR / file, size).items():
            arrays[f"{name}.{key}"] = value
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as f:
        np.savez_compressed(f, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Draw the add-on store's icon.png (256x256) and logo.png (250x100) with the standard library.

The images are vector shapes (a hub linked to its peers, and a dot-matrix word mark) rasterised
with analytic anti-aliasing and written as RGBA PNGs with zlib and struct, so rebuilding them
needs no imaging library and gives the same bytes every time:

    python addon/make_images.py            # writes icon.png and logo.png in the repository root
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

Colour = tuple[int, int, int]
Box = tuple[float, float, float, float]
# A shape: for a pixel centre, its signed distance in pixels (negative inside); and the box
# (x0, y0, x1, y1) outside which it covers nothing, so painting visits only those pixels.
Shape = tuple[Callable[[float, float], float], Box]

NAVY: Colour = (27, 42, 65)
TEAL: Colour = (47, 191, 159)
MINT: Colour = (168, 236, 214)
SLATE: Colour = (96, 125, 139)

# 5x7 dot-matrix glyphs for the word mark, rows top to bottom.
GLYPHS: dict[str, tuple[str, ...]] = {
    "a": ("00000", "00000", "01110", "00001", "01111", "10001", "01111"),
    "c": ("00000", "00000", "01110", "10000", "10000", "10001", "01110"),
    "d": ("00001", "00001", "01101", "10011", "10001", "10001", "01111"),
    "e": ("00000", "00000", "01110", "10001", "11111", "10000", "01110"),
    "g": ("00000", "01111", "10001", "10001", "01111", "00001", "01110"),
    "i": ("00100", "00000", "01100", "00100", "00100", "00100", "01110"),
    "n": ("00000", "00000", "10110", "11001", "10001", "10001", "10001"),
    "r": ("00000", "00000", "10110", "11001", "10000", "10000", "10000"),
    "t": ("01000", "01000", "11100", "01000", "01000", "01001", "00110"),
}


class Canvas:
    """An RGBA pixel buffer that shapes are painted onto, back to front."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.pixels = [[0.0, 0.0, 0.0, 0.0] for _ in range(width * height)]

    def paint(self, shape: Shape, colour: Colour) -> None:
        """Blend ``colour`` over every pixel that ``shape`` covers, by its fraction covered."""
        distance, (x0, y0, x1, y1) = shape
        for y in range(max(0, int(y0) - 1), min(self.height, math.ceil(y1) + 1)):
            for x in range(max(0, int(x0) - 1), min(self.width, math.ceil(x1) + 1)):
                coverage = min(1.0, max(0.0, 0.5 - distance(x + 0.5, y + 0.5)))
                if coverage > 0.0:
                    self._blend(y * self.width + x, colour, coverage)

    def _blend(self, index: int, colour: Colour, alpha: float) -> None:
        pixel = self.pixels[index]
        out_alpha = alpha + pixel[3] * (1.0 - alpha)
        for channel in range(3):
            below = pixel[channel] * pixel[3] * (1.0 - alpha)
            pixel[channel] = (colour[channel] * alpha + below) / out_alpha
        pixel[3] = out_alpha

    def png(self) -> bytes:
        """The canvas as PNG bytes: 8-bit RGBA, no filter, zlib level 9."""
        rows = bytearray()
        for y in range(self.height):
            rows.append(0)
            for pixel in self.pixels[y * self.width : (y + 1) * self.width]:
                rows.extend(round(value) for value in pixel[:3])
                rows.append(round(pixel[3] * 255))
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 6, 0, 0, 0)
        body = _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        return b"\x89PNG\r\n\x1a\n" + body + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _square(cx: float, cy: float, reach: float) -> Box:
    return (cx - reach, cy - reach, cx + reach, cy + reach)


def circle(cx: float, cy: float, radius: float) -> Shape:
    return (lambda x, y: math.hypot(x - cx, y - cy) - radius), _square(cx, cy, radius)


def ring(cx: float, cy: float, radius: float, width: float) -> Shape:
    def distance(x: float, y: float) -> float:
        return abs(math.hypot(x - cx, y - cy) - radius) - width / 2

    return distance, _square(cx, cy, radius + width)


def segment(ax: float, ay: float, bx: float, by: float, width: float) -> Shape:
    """A line from a to b with round caps."""
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy

    def distance(x: float, y: float) -> float:
        t = min(1.0, max(0.0, ((x - ax) * dx + (y - ay) * dy) / length2))
        return math.hypot(x - ax - t * dx, y - ay - t * dy) - width / 2

    pad = width / 2
    return distance, (min(ax, bx) - pad, min(ay, by) - pad, max(ax, bx) + pad, max(ay, by) + pad)


def rounded_rect(x0: float, y0: float, x1: float, y1: float, radius: float) -> Shape:
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hx, hy = (x1 - x0) / 2 - radius, (y1 - y0) / 2 - radius

    def distance(x: float, y: float) -> float:
        qx, qy = abs(x - cx) - hx, abs(y - cy) - hy
        outside = math.hypot(max(qx, 0.0), max(qy, 0.0))
        return outside + min(max(qx, qy), 0.0) - radius

    return distance, (x0, y0, x1, y1)


def draw_mark(canvas: Canvas, cx: float, cy: float, scale: float) -> None:
    """The hub-and-peers mark: a hub linked to five peers on a ring, ``scale`` 1.0 = 256 px wide."""
    orbit = 74 * scale
    peers = [
        (cx + orbit * math.cos(math.radians(angle)), cy + orbit * math.sin(math.radians(angle)))
        for angle in (-90, -18, 54, 126, 198)
    ]
    canvas.paint(ring(cx, cy, orbit, 4 * scale), SLATE)
    for px, py in peers:
        canvas.paint(segment(cx, cy, px, py, 9 * scale), MINT)
    for px, py in peers:
        canvas.paint(circle(px, py, 19 * scale), TEAL)
        canvas.paint(circle(px, py, 8.5 * scale), NAVY)
    canvas.paint(circle(cx, cy, 34 * scale), TEAL)
    canvas.paint(circle(cx, cy, 19 * scale), MINT)


def draw_word(
    canvas: Canvas, text: str, origin: tuple[float, float], dot: float, colour: Colour
) -> float:
    """Dot-matrix ``text`` from ``origin`` (left, top), ``dot`` pitch; returns the x after it.

    Mid-tone colours keep the word readable on the store's light and dark themes alike.
    """
    x, top = origin
    for letter in text:
        for row, bits in enumerate(GLYPHS[letter]):
            for column, bit in enumerate(bits):
                if bit == "1":
                    dx, dy = x + column * dot + dot / 2, top + row * dot + dot / 2
                    canvas.paint(circle(dx, dy, dot * 0.5), colour)
        x += 6 * dot
    return x


def icon() -> Canvas:
    canvas = Canvas(256, 256)
    canvas.paint(rounded_rect(0, 0, 256, 256, 44), NAVY)
    draw_mark(canvas, 128, 128, 1.0)
    return canvas


def logo() -> Canvas:
    canvas = Canvas(250, 100)
    draw_mark(canvas, 50, 50, 0.45)
    right = draw_word(canvas, "argentic", (102, 20), 3.0, SLATE)
    draw_word(canvas, "edge", (right - 24 * 3.0, 54), 3.0, TEAL)
    return canvas


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    (root / "icon.png").write_bytes(icon().png())
    (root / "logo.png").write_bytes(logo().png())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""A minimal PNG writer: 8-bit RGB, no filtering, zlib from the standard library.

Called by ``timeline`` for the chaos scenarios' pictures; matplotlib is not
a dependency. ``Canvas`` is a pixel grid with rectangles and a 3x5 bitmap
font for digits and a few letters (labels such as "0s", "12.5s").
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

RGB = tuple[int, int, int]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# 3x5 glyphs, rows top to bottom, 3 bits each (4 = left column)
_FONT: dict[str, tuple[int, ...]] = {
    "0": (7, 5, 5, 5, 7),
    "1": (2, 6, 2, 2, 7),
    "2": (7, 1, 7, 4, 7),
    "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7),
    "6": (7, 4, 7, 5, 7),
    "7": (7, 1, 1, 1, 1),
    "8": (7, 5, 7, 5, 7),
    "9": (7, 5, 7, 1, 7),
    ".": (0, 0, 0, 0, 2),
    "s": (0, 3, 6, 1, 6),
    "-": (0, 0, 7, 0, 0),
    " ": (0, 0, 0, 0, 0),
    "%": (5, 1, 2, 4, 5),
}


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(width: int, height: int, rows: list[bytes]) -> bytes:
    """PNG bytes from ``height`` rows of ``width`` RGB pixels (3 bytes each)."""
    if width <= 0 or height <= 0 or len(rows) != height:
        raise ValueError("rows must match a positive width and height")
    if any(len(r) != width * 3 for r in rows):
        raise ValueError("every row must hold width * 3 bytes")
    raw = b"".join(b"\x00" + r for r in rows)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


class Canvas:
    def __init__(self, width: int, height: int, background: RGB = (255, 255, 255)) -> None:
        self.width = width
        self.height = height
        self._px = [bytearray(bytes(background) * width) for _ in range(height)]

    def pixel(self, x: int, y: int, color: RGB) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            self._px[y][3 * x : 3 * x + 3] = bytes(color)

    def get(self, x: int, y: int) -> RGB:
        r, g, b = self._px[y][3 * x : 3 * x + 3]
        return (r, g, b)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: RGB) -> None:
        """Fill [x0, x1) x [y0, y1), clipped to the canvas."""
        x0, x1 = max(0, x0), min(self.width, x1)
        y0, y1 = max(0, y0), min(self.height, y1)
        if x0 >= x1:
            return
        run = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            self._px[y][3 * x0 : 3 * x1] = run

    def text(self, x: int, y: int, s: str, color: RGB = (0, 0, 0), scale: int = 2) -> None:
        for ch in s:
            glyph = _FONT.get(ch, _FONT[" "])
            for row, bits in enumerate(glyph):
                for col in range(3):
                    if bits & (4 >> col):
                        self.rect(
                            x + col * scale,
                            y + row * scale,
                            x + (col + 1) * scale,
                            y + (row + 1) * scale,
                            color,
                        )
            x += 4 * scale

    def png(self) -> bytes:
        return encode_png(self.width, self.height, [bytes(r) for r in self._px])

    def save(self, path: Path) -> None:
        path.write_bytes(self.png())

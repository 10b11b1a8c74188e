"""Our PNG writer: a valid file (signature, chunk CRCs, zlib rows) and the
timeline's colours where the probe failed."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from kubeprem.report import timeline
from kubeprem.report.png import PNG_SIGNATURE, Canvas, encode_png


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == PNG_SIGNATURE
    out, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        kind, body = data[i + 4 : i + 8], data[i + 8 : i + 8 + n]
        (crc,) = struct.unpack(">I", data[i + 8 + n : i + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        out.append((kind, body))
        i += 12 + n
    return out


def decode(data: bytes) -> tuple[int, int, list[bytes]]:
    parts = chunks(data)
    assert [k for k, _ in parts] == [b"IHDR", b"IDAT", b"IEND"]
    w, h, depth, ctype, _, _, _ = struct.unpack(">IIBBBBB", parts[0][1])
    assert (depth, ctype) == (8, 2)
    raw = zlib.decompress(parts[1][1])
    rows = [raw[y * (3 * w + 1) : (y + 1) * (3 * w + 1)] for y in range(h)]
    assert all(r[0] == 0 for r in rows)
    return w, h, [r[1:] for r in rows]


def test_encode_round_trips_pixels() -> None:
    c = Canvas(4, 3)
    c.rect(1, 1, 3, 2, (255, 0, 0))
    w, h, rows = decode(c.png())
    assert (w, h) == (4, 3)
    assert rows[1][3:6] == b"\xff\x00\x00" and rows[0][3:6] == b"\xff\xff\xff"


def test_bad_rows_are_refused() -> None:
    with pytest.raises(ValueError):
        encode_png(2, 1, [b"\x00" * 5])


def test_timeline_is_red_where_the_probe_failed(tmp_path: Path) -> None:
    samples = [(i / 10, not 30 <= i < 50) for i in range(100)]
    path = timeline.write_timeline(tmp_path / "t.png", samples, 10.0, marks=[3.0])
    w, _, rows = decode(path.read_bytes())
    y = (timeline.BAR_TOP + timeline.BAR_BOTTOM) // 2
    row = rows[y]

    def color(x: int) -> tuple[int, ...]:
        return tuple(row[3 * x : 3 * x + 3])

    usable = w - 20
    assert color(10 + int(0.1 * usable)) == timeline.GREEN
    assert color(10 + int(0.4 * usable)) == timeline.RED
    assert color(10 + int(0.8 * usable)) == timeline.GREEN
    assert color(10 + int(0.3 * usable)) == timeline.BLUE  # the fault mark

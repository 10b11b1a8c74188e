"""A chaos scenario's probe timeline as a PNG: one column per time slice,
green when every probe in it succeeded, red when one failed, grey when none
ran; blue marks when the fault was injected and when it was undone; a second
scale every 5 s (labelled every 10 s).

Called by `verify --chaos` and bench/chaos.py with the probe's samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kubeprem.report.png import Canvas

GREEN = (46, 160, 67)
RED = (215, 38, 56)
GREY = (200, 200, 200)
BLUE = (31, 111, 235)
BLACK = (0, 0, 0)

WIDTH = 900
BAR_TOP, BAR_BOTTOM = 20, 70
HEIGHT = 100


def render_timeline(
    samples: Sequence[tuple[float, bool]],
    duration: float,
    marks: Sequence[float] = (),
) -> Canvas:
    """``samples``: (seconds since the probe started, ok); ``marks``: seconds."""
    c = Canvas(WIDTH, HEIGHT)
    span = max(duration, 1e-6)
    left, right = 10, WIDTH - 10
    usable = right - left
    state: list[int] = [0] * usable  # 0 none, 1 ok, 2 failed
    for t, ok in samples:
        x = min(usable - 1, max(0, int(t / span * usable)))
        state[x] = max(state[x], 1 if ok else 2)
    last = 0
    for x in range(usable):
        s = state[x] or last  # carry the last state over slices without a probe
        c.rect(left + x, BAR_TOP, left + x + 1, BAR_BOTTOM, (GREY, GREEN, RED)[s])
        if state[x]:
            last = state[x]
    for m in marks:
        x = left + int(min(max(m, 0), span) / span * usable)
        c.rect(x - 1, BAR_TOP - 8, x + 1, BAR_BOTTOM + 4, BLUE)
    step = 5
    for sec in range(0, int(span) + 1, step):
        x = left + int(sec / span * usable)
        c.rect(x, BAR_BOTTOM + 2, x + 1, BAR_BOTTOM + 8, BLACK)
        if sec % 10 == 0:
            c.text(x + 2, BAR_BOTTOM + 12, f"{sec}s", BLACK, scale=2)
    return c


def write_timeline(
    path: Path,
    samples: Sequence[tuple[float, bool]],
    duration: float,
    marks: Sequence[float] = (),
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    render_timeline(samples, duration, marks).save(path)
    return path

"""Commands of the render group (filled in by their own modules)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    return None

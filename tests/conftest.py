"""Shared test helpers: golden files and the example site."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from kubeprem.site import Site, example_text, parse_site

GOLDEN_DIR = Path(__file__).parent / "golden"
REGEN = os.environ.get("KUBEPREM_REGEN_GOLDEN") == "1"


def assert_golden(name: str, text: str) -> None:
    """Compare ``text`` with tests/golden/<name>. Regenerating is explicit:
    KUBEPREM_REGEN_GOLDEN=1 pytest ..., then review the diff."""
    path = GOLDEN_DIR / name
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"missing golden file {path}; create it with KUBEPREM_REGEN_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} differs from its golden file; if intended, regenerate with "
        "KUBEPREM_REGEN_GOLDEN=1 and review the diff"
    )


@pytest.fixture
def example_site() -> Site:
    """The `kubeprem init` example: 3 controllers (etcd, control-plane, lb), 3 workers."""
    site, _ = parse_site(example_text(), "example.yaml")
    return site


def site_with_version(version: str, source: str | None = None) -> Site:
    """The example at another release (and artifacts source)."""
    text = re.sub(
        r'kubernetes_version: "[0-9.]+"',
        f'kubernetes_version: "{version}"',
        example_text(),
        count=1,
    )
    if source is not None:
        text = re.sub(r"(?m)^  source: \S+", f"  source: {source}", text, count=1)
    site, _ = parse_site(text, "example.yaml")
    return site


@pytest.fixture
def legacy_site() -> Site:
    """The example at 1.20.2 built from Debian's source package (the legacy path)."""
    return site_with_version("1.20.2", "debian-source")

"""Shared test helpers: golden files and the example site."""

from __future__ import annotations

import os
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


def site_with_version(version: str) -> Site:
    text = example_text().replace(
        'kubernetes_version: "1.20.2"', f'kubernetes_version: "{version}"'
    )
    site, _ = parse_site(text, "example.yaml")
    return site

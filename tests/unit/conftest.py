"""Fixtures shared by the unit tests of plan and apply."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from kubeprem.pki.bundle import PkiBundle
from kubeprem.pki.store import ensure_pki
from kubeprem.site import LoadedSite, example_text, load_site


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoadedSite, PkiBundle]]:
    """The example site (3 controllers, 3 workers) and its PKI, made once per module."""
    folder = tmp_path_factory.mktemp("site")
    (folder / "site.yaml").write_text(example_text())
    loaded = load_site(folder / "site.yaml")
    _, bundle = ensure_pki(loaded, datetime(2024, 1, 1, tzinfo=UTC))
    yield loaded, bundle

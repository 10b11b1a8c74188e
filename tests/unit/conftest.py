"""Fixtures shared by the unit tests of plan and apply."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest

from kubeprem.cli import cluster_cmds
from kubeprem.pki.bundle import PkiBundle
from kubeprem.pki.store import ensure_pki
from kubeprem.site import LoadedSite, example_text, load_site
from kubeprem.transport.base import Transport
from kubeprem.transport.fake import FakeTransport


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoadedSite, PkiBundle]]:
    """The example site (3 controllers, 3 workers) and its PKI, made once per module."""
    folder = tmp_path_factory.mktemp("site")
    (folder / "site.yaml").write_text(example_text())
    loaded = load_site(folder / "site.yaml")
    _, bundle = ensure_pki(loaded, datetime(2024, 1, 1, tzinfo=UTC))
    yield loaded, bundle


def cli_on_fakes(
    monkeypatch: pytest.MonkeyPatch, fakes: Mapping[str, FakeTransport], bundle: PkiBundle
) -> None:
    """`kubeprem plan|apply` on the command line, against fake hosts: no SSH,
    the given PKI, no artifacts or images to push."""

    @asynccontextmanager
    async def connected(
        _loaded: LoadedSite, _names: object = None
    ) -> AsyncIterator[dict[str, Transport]]:
        yield dict(fakes)

    monkeypatch.setattr(cluster_cmds, "connected", connected)
    monkeypatch.setattr(cluster_cmds, "ensure_pki", lambda _l, _now: (None, bundle))
    monkeypatch.setattr(cluster_cmds, "cluster_artifacts", lambda _l: None)
    monkeypatch.setattr(cluster_cmds, "cluster_images", lambda _l: [])

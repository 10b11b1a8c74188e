"""Lab test helpers: root check, a site of our own, cleanup.

Lab tests need root (machines, mounts, bridge, firewall). Each site made
here has a cluster name and a node subnet unique to the test run, so it
cannot collide with a developer's lab; every lab a test starts is torn down
even when the test fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeprem.cli.main import main
from kubeprem.site import LoadedSite, example_text, load_site

NEEDS_ROOT = "lab tests need root: they create systemd-nspawn machines, mounts, a bridge"


def require_lab_host() -> None:
    if os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT)
    missing = [p for p in ("systemd-nspawn", "ip", "nft", "ssh") if shutil.which(p) is None]
    if missing:
        pytest.fail(f"lab host lacks {', '.join(missing)}: install deps/lab.txt")


def write_lab_site(folder: Path, *, subnet_octet: int | None = None) -> Path:
    """The `kubeprem init` topology, renamed and moved to a subnet of its own."""
    name = "kpt-" + secrets.token_hex(3)
    octet = subnet_octet if subnet_octet is not None else 100 + secrets.randbelow(100)
    text = example_text().replace("  name: kubeprem ", f"  name: {name} ", 1)
    text = text.replace("10.240.0.", f"10.241.{octet}.").replace(
        "10.240.0.0/24", f"10.241.{octet}.0/24"
    )
    folder.mkdir(parents=True, exist_ok=True)
    site = folder / "site.yaml"
    site.write_text(text)
    return site


@pytest.fixture
def lab_site(tmp_path: Path) -> Iterator[LoadedSite]:
    """A fresh site file for a lab; its lab is removed after the test."""
    require_lab_host()
    path = write_lab_site(tmp_path)
    loaded = load_site(path)
    try:
        yield loaded
    finally:
        main(["lab", "down", str(path)])

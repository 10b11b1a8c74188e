"""Artifacts from Debian: version strings, apt sources, dpkg listings (pure parts)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kubeprem.artifacts import debian as deb
from kubeprem.errors import InputError

DEBIAN_SOURCES = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


@pytest.mark.parametrize(
    ("version", "upstream"),
    [
        ("3.4.23-4+b4", "3.4.23"),
        ("1.6.20~ds1-1+deb12u3", "1.6.20"),
        ("1.1.5+ds1-1+deb12u1", "1.1.5"),
        ("1.1.1+ds1-3+b5", "1.1.1"),
        ("2:1.19~1", "1.19"),
        ("1.20.5+really1.20.2-1.1+deb12u1", "1.20.2"),
        ("1.20.5+really1.20.2", "1.20.2"),
    ],
)
def test_debian_upstream(version: str, upstream: str) -> None:
    assert deb.debian_upstream(version) == upstream


def test_changelog_version() -> None:
    text = "kubernetes (1.20.5+really1.20.2-1.1+deb12u1) bookworm; urgency=medium\n\n  * x\n"
    assert deb.changelog_version(text) == "1.20.5+really1.20.2-1.1+deb12u1"
    assert deb.changelog_version("garbage") is None


def test_check_version() -> None:
    deb.check_version("1.20.2")
    with pytest.raises(InputError) as err:
        deb.check_version("1.37.2")
    msg = str(err.value)
    assert "1.37.2" in msg and "provides 1.20.2 only" in msg and "artifacts.source: mirror" in msg


def test_deb_src_entry_mirrors_the_deb_entry() -> None:
    files = {"/etc/apt/sources.list.d/debian.sources": DEBIAN_SOURCES}
    assert not deb.has_deb_src(files, "bookworm")
    entry = deb.deb_src_entry(files, "bookworm")
    assert entry == (
        "Types: deb-src\n"
        "URIs: http://deb.debian.org/debian\n"
        "Suites: bookworm\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    assert entry is not None
    files["/etc/apt/sources.list.d/kubeprem-src.sources"] = entry
    assert deb.has_deb_src(files, "bookworm")
    assert not deb.has_deb_src(files, "trixie")


def test_deb_src_one_line_format() -> None:
    files = {"/etc/apt/sources.list": "deb http://ftp.example/debian bookworm main contrib\n"}
    assert not deb.has_deb_src(files, "bookworm")
    assert deb.deb_src_entry(files, "bookworm") == (
        "deb-src http://ftp.example/debian bookworm main contrib\n"
    )
    files["/etc/apt/sources.list"] += "# deb-src http://x bookworm main\n"
    assert not deb.has_deb_src(files, "bookworm")  # commented out
    files["/etc/apt/sources.list"] += "deb-src http://x bookworm main\n"
    assert deb.has_deb_src(files, "bookworm")


def test_disabled_deb822_stanza_does_not_count() -> None:
    text = "Types: deb-src\nURIs: http://x\nSuites: bookworm\nEnabled: no\n"
    assert not deb.has_deb_src({"a.sources": text}, "bookworm")
    assert deb.deb_src_entry({"a.sources": text}, "bookworm") is None


def test_find_in_listing() -> None:
    listing = "/.\n/usr\n/usr/bin\n/usr/sbin/runc\n/usr/bin/runc\n/usr/share/doc/runc\n"
    assert deb.find_in_listing(listing, "runc", "/usr/sbin") == "/usr/sbin/runc"
    assert deb.find_in_listing(listing, "runc", "/usr/bin") == "/usr/bin/runc"
    cni = "/usr/lib/cni\n/usr/lib/cni/bridge\n/usr/lib/cni/host-local\n"
    assert deb.find_in_listing(cni, "bridge", "/usr/lib/cni") == "/usr/lib/cni/bridge"
    assert deb.find_in_listing(cni, "portmap", "/usr/lib/cni") is None
    assert deb.find_in_listing(cni, "local", "/usr/lib/cni") is None  # whole names only


def test_every_non_kubernetes_artifact_has_a_debian_package() -> None:
    from kubeprem.artifacts.cache import ARTIFACT_NAMES, KUBERNETES_BINARIES

    assert set(deb.DEBIAN_BINARIES) == set(ARTIFACT_NAMES) - set(KUBERNETES_BINARIES)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_a_running_build_is_recognised(tmp_path: Path) -> None:
    tree = tmp_path / "kubernetes-1.20.5+really1.20.2"
    (tree / "sub").mkdir(parents=True)
    (tree / "Makefile").write_text("all:\n\tsleep 30\n")
    log = tmp_path / "build.log"
    assert deb.builds_running(tree) == []
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["make"], cwd=tree, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        # until make runs alone: a child it has forked but not yet turned
        # into its recipe's command is a "make" in the tree as well
        deadline = time.monotonic() + 10
        while deb.builds_running(tree) != [proc.pid] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert deb.builds_running(tree) == [proc.pid]
        assert deb._stdout_file(proc.pid) == log
        assert deb.builds_running(tree / "sub") == []
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # make and its sleep
        proc.wait()
    assert deb.builds_running(tree) == []


def test_built_since(tmp_path: Path) -> None:
    (tmp_path / "kubectl").write_bytes(b"x")
    os.utime(tmp_path / "kubectl", (1000, 1000))
    (tmp_path / "kubelet").write_bytes(b"x")
    assert deb._built_since(tmp_path, ["kubelet", "kubectl", "kube-proxy"], 2000) == ["kubelet"]

"""The image catalogue, references, tag checks, layer diffs and the apply API."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from kubeprem.errors import InputError, OperationError
from kubeprem.images import CATALOGUE, image_archives, image_refs, list_images
from kubeprem.images.archive import Entry, ImageConfig, write_image_archive, write_layer
from kubeprem.images.builder import check_tag, upstream_version
from kubeprem.images.catalogue import by_name
from kubeprem.images.rootfs import diff_entries, excluded, first_mirror, host_sources, tree_entries
from kubeprem.site import Site, example_text, parse_site
from tests.conftest import site_with_version


def test_catalogue_is_consistent() -> None:
    names = [s.name for s in CATALOGUE]
    assert len(names) == len(set(names))
    assert {"pause", "busybox", "redis", "postgresql", "haproxy"} <= set(names)
    assert {"node-exporter", "redis-exporter", "postgres-exporter"} <= set(names)
    assert {"prometheus", "alertmanager"} <= set(names)
    for s in CATALOGUE:
        assert s.entrypoint and s.entrypoint[0].startswith("/"), s.name
        assert all(p.split("/")[1] in ("tcp", "udp") for p in s.ports), s.name
        if s.source != "pause":
            assert s.tag.endswith("-bookworm"), s.name
        if s.source == "go":
            # the tag states the build module's version; the base is Debian's files
            assert s.go_build is not None and s.version_of == s.go_build[0], s.name
            assert s.tag == f"{s.go_build[1]}-bookworm", s.name
            assert s.files and s.user == "65534:65534", s.name
        elif s.source != "pause":
            assert s.version_of in s.packages, s.name
    assert by_name("redis").user == "redis" and by_name("postgresql").user == "postgres"
    assert "redis-sentinel" in by_name("redis").packages
    assert by_name("busybox").entrypoint == ("/bin/busybox",)
    assert by_name("coredns").entrypoint == ("/coredns",)


def test_refs_pause_follows_the_kubernetes_version(example_site: Site) -> None:
    assert image_refs()["pause"] == "registry.k8s.io/pause:3.10.2"  # the newest release's
    assert image_refs(example_site)["pause"] == "registry.k8s.io/pause:3.10.2"
    assert image_refs(site_with_version("1.20.2"))["pause"] == "k8s.gcr.io/pause:3.2"
    assert image_refs()["redis"] == "kubeprem.local/redis:7.0.15-bookworm"


def test_refs_renamed_by_registry_or_one_by_one() -> None:
    refs = image_refs(registry="mirror.example.org/k", refs={"busybox": "m.example/bb:1"})
    assert refs["redis"] == "mirror.example.org/k/redis:7.0.15-bookworm"
    assert refs["busybox"] == "m.example/bb:1"
    assert refs["pause"] == "registry.k8s.io/pause:3.10.2"
    with pytest.raises(InputError, match="no image 'nope'"):
        image_refs(refs={"nope": "x:1"})


@pytest.mark.parametrize(
    ("debian", "upstream"),
    [
        ("5:7.0.15-1~deb12u10", "7.0.15"),
        ("15.20-0+deb12u1", "15.20"),
        ("2.42.0+ds-5+deb12u1", "2.42.0"),
        ("1:1.35.0-4+deb12u1+b1", "1.35.0"),
        ("0.25.0-1+b4", "0.25.0"),
        ("3.0.2", "3.0.2"),
    ],
)
def test_upstream_version(debian: str, upstream: str) -> None:
    assert upstream_version(debian) == upstream


def test_tag_must_match_debian() -> None:
    redis = by_name("redis")
    check_tag(redis, {"redis-server": "5:7.0.15-1~deb12u10"})
    with pytest.raises(
        OperationError, match=re.escape("does not match Debian's redis-server 5:7.2.4-1")
    ):
        check_tag(redis, {"redis-server": "5:7.2.4-1"})
    with pytest.raises(OperationError, match="would not be installed"):
        check_tag(redis, {})


def test_layer_filter() -> None:
    assert excluded("usr/share/doc/redis-server/changelog.gz")
    assert not excluded("usr/share/doc/redis-server/copyright")
    assert excluded("var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease")
    assert excluded("usr/lib/python3/dist-packages/patroni/__pycache__")
    assert excluded("dev/null")
    assert not excluded("dev") and not excluded("usr/bin/redis-server")


def make_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def test_diff_adds_changes_and_whiteouts(tmp_path: Path) -> None:
    base, image = tmp_path / "base", tmp_path / "image"
    common = {"etc/passwd": b"root\n", "usr/bin/keep": b"k", "usr/share/doc/x/changelog": b"c"}
    make_tree(base, {**common, "etc/old.conf": b"o", "opt/gone/file": b"g"})
    make_tree(image, {**common, "usr/share/doc/x/changelog": b"changed but dropped"})
    make_tree(image, {"etc/passwd": b"root\nredis\n", "usr/bin/redis": b"r"})
    os.symlink("redis", image / "usr/bin/redis-check")
    (image / "opt").mkdir()
    os.utime(image / "usr/bin/keep", ns=(1, 1))  # same bytes, other mtime: unchanged

    got = {e.path: e.kind for e in diff_entries(base, image)}
    assert got == {
        "etc/passwd": "file",
        "usr/bin/redis": "file",
        "usr/bin/redis-check": "symlink",
        "etc/old.conf": "whiteout",
        "opt/gone": "whiteout",
    }
    assert {e.path for e in tree_entries(base)} >= {"etc", "etc/passwd", "opt/gone/file"}
    assert "usr/share/doc/x/changelog" not in {e.path for e in tree_entries(base)}


def test_host_sources_keeps_binary_entries(tmp_path: Path) -> None:
    (tmp_path / "debian.sources").write_text(
        "Types: deb deb-src\n# a comment\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n"
        "Components: main\n"
    )
    text = host_sources([tmp_path])
    assert text.startswith("Types: deb\nURIs: http://mirror.example/debian\n")
    assert "src.example" not in text and "# a comment" not in text
    assert first_mirror(text, "bookworm") == "http://mirror.example/debian"
    with pytest.raises(OperationError, match="no apt source for trixie"):
        first_mirror(text, "trixie")


def mirrored_archive(tmp_path: Path, ref: str) -> Path:
    layer = write_layer([Entry("pause", "file", 0o755, data=b"x")], tmp_path / "l.tar")
    dest = tmp_path / "pause-mirror.tar"
    write_image_archive(dest, ref, ImageConfig(entrypoint=("/pause",)), [layer])
    return dest


def test_image_archives_needs_built_images(tmp_path: Path) -> None:
    with pytest.raises(OperationError, match="kubeprem images build --only pause busybox"):
        image_archives(cache=tmp_path / "cache", names=["pause", "busybox"])
    assert all(s.archive is None for s in list_images(cache=tmp_path / "cache"))


def test_image_archives_uses_the_sites_mirrored_archives(tmp_path: Path) -> None:
    archive = mirrored_archive(tmp_path, "registry.k8s.io/pause:3.10.2")
    text = example_text().replace(
        "images: []",
        "images:\n  - name: registry.k8s.io/pause:3.10.2\n    archive: pause-mirror.tar\n#",
    )
    site, _ = parse_site(text, "site.yaml")
    [got] = image_archives(site, site_dir=tmp_path, names=["pause"], cache=tmp_path / "c")
    assert got.path == archive and got.ref == "registry.k8s.io/pause:3.10.2"
    assert got.digest.startswith("sha256:") and got.size == archive.stat().st_size

    wrong = example_text().replace(
        "images: []", "images:\n  - name: other/pause:1\n    archive: pause-mirror.tar\n#"
    )
    site, _ = parse_site(wrong, "site.yaml")
    with pytest.raises(
        InputError, match=re.escape("the archive names registry.k8s.io/pause:3.10.2")
    ):
        image_archives(site, site_dir=tmp_path, names=["pause"], cache=tmp_path / "c")

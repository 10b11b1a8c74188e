"""Artifacts: manifest, checksum files, mirror layout, cache reuse and commit."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath

import pytest

from kubeprem.artifacts import cache as art
from kubeprem.artifacts.manifest import (
    Entry,
    Manifest,
    ManifestError,
    parse_checksums,
    read_manifest,
    write_manifest,
)
from kubeprem.artifacts.mirror import layout
from kubeprem.components.versions import TABLE
from kubeprem.errors import InputError
from kubeprem.site.model import Artifacts, Site
from tests.conftest import site_with_version

D1 = "a" * 64
D2 = "b" * 64


# -- checksum files ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        (f"{D1}\n", "kubelet", D1),  # Kubernetes <binary>.sha256: a bare digest
        (f"{D1.upper()}", "kubelet", D1),
        (
            f"{D1}  containerd-1.6.20-linux-amd64.tar.gz\n",
            "containerd-1.6.20-linux-amd64.tar.gz",
            D1,
        ),
        (f"{D2}  runc.arm64\n{D1}  runc.amd64\n", "runc.amd64", D1),  # runc.sha256sum
        (f"{D1} *runc.amd64\n", "runc.amd64", D1),  # binary-mode marker
        (f"{D1}  ./dist/x.tgz\n", "x.tgz", D1),
        (f"{D2}  etcd-v3.4.13-darwin-amd64.zip\n", "etcd-v3.4.13-linux-amd64.tar.gz", None),
        ("not a digest\n", "kubelet", None),
        ("", "kubelet", None),
        (f"{D1[:-1]}  kubelet\n", "kubelet", None),
    ],
)
def test_parse_checksums(text: str, name: str, expected: str | None) -> None:
    assert parse_checksums(text, name) == expected


# -- manifest ------------------------------------------------------------------------


def _entry(path: str = "bin/etcd", sha: str = D1, size: int = 3) -> Entry:
    return Entry(path, sha, size, "test", "3.4.23", "/usr/local/bin/etcd")


def test_manifest_round_trip(tmp_path: Path) -> None:
    m = Manifest("1.20.2", "debian-source", {"etcd": _entry()})
    write_manifest(tmp_path / "manifest.json", m)
    assert read_manifest(tmp_path / "manifest.json") == m
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert doc["files"]["etcd"] == {
        "path": "bin/etcd",
        "sha256": D1,
        "size": 3,
        "source": "test",
        "version": "3.4.23",
        "destination": "/usr/local/bin/etcd",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temp file left


@pytest.mark.parametrize(
    "text",
    ["", "[]", '{"format": 2, "files": {}}', '{"format": 1, "files": {"x": {}}}', "{"],
)
def test_manifest_invalid(text: str) -> None:
    with pytest.raises(ManifestError):
        Manifest.from_json(text, "m.json")


# -- what a version needs --------------------------------------------------------------


def test_artifact_names_and_destinations() -> None:
    specs = art.specs_of(art.mirror_components("1.20.2"))
    assert [s.name for s in specs] == list(art.ARTIFACT_NAMES)
    assert len(specs) == 16
    dest = {s.name: s.destination for s in specs}
    assert dest["kube-apiserver"] == PurePosixPath("/usr/local/bin/kube-apiserver")
    assert dest["containerd-shim-runc-v2"] == PurePosixPath(
        "/usr/local/bin/containerd-shim-runc-v2"
    )
    assert dest["portmap"] == PurePosixPath("/opt/cni/bin/portmap")
    paths = {s.name: s.cache_path for s in specs}
    assert paths["bridge"] == PurePosixPath("cni/bridge")
    assert paths["runc"] == PurePosixPath("bin/runc")


@pytest.mark.parametrize("version", ["1.25.0", "1.31.4"])
def test_unsupported_version_is_input_error(version: str) -> None:
    with pytest.raises(InputError, match=rf"{re.escape(version)} is not supported"):
        art.mirror_components(version)


def test_mirror_layout_1_20() -> None:
    files = layout(art.mirror_components("1.20.2"))
    got = [(f.path, f.checksum_path) for f in files]
    k = "kubernetes/release/v1.20.2/bin/linux/amd64"
    assert got == [
        *[(f"{k}/{b}", f"{k}/{b}.sha256") for b in art.KUBERNETES_BINARIES],
        ("etcd/v3.4.13/etcd-v3.4.13-linux-amd64.tar.gz", "etcd/v3.4.13/SHA256SUMS"),
        (
            "containerd/v1.6.20/containerd-1.6.20-linux-amd64.tar.gz",
            "containerd/v1.6.20/containerd-1.6.20-linux-amd64.tar.gz.sha256sum",
        ),
        ("runc/v1.1.5/runc.amd64", "runc/v1.1.5/runc.sha256sum"),
        (
            "cni-plugins/v1.1.1/cni-plugins-linux-amd64-v1.1.1.tgz",
            "cni-plugins/v1.1.1/cni-plugins-linux-amd64-v1.1.1.tgz.sha256",
        ),
    ]
    etcd = files[6]
    assert dict(etcd.members) == {
        "etcd": "etcd-v3.4.13-linux-amd64/etcd",
        "etcdctl": "etcd-v3.4.13-linux-amd64/etcdctl",
    }
    assert dict(files[7].members)["ctr"] == "bin/ctr"
    assert files[0].upstream(files[0].path) == (
        "https://dl.k8s.io/release/v1.20.2/bin/linux/amd64/kube-apiserver"
    )
    assert etcd.upstream(etcd.checksum_path) == (
        "https://github.com/etcd-io/etcd/releases/download/v3.4.13/SHA256SUMS"
    )
    assert files[9].upstream(files[9].path) == (
        "https://github.com/containernetworking/plugins/releases/download/"
        "v1.1.1/cni-plugins-linux-amd64-v1.1.1.tgz"
    )


def test_every_supported_minor_has_a_layout() -> None:
    for (major, minor), row in sorted(TABLE.items()):
        v = f"{major}.{minor}.0"
        files = layout(art.mirror_components(v))
        provided = [name for f in files for name in f.provides]
        assert len(provided) == 16 + row.etcdutl  # etcdutl beside etcd 3.6
        assert sorted(provided) == sorted(art.artifact_names(v))


def test_default_cache_dir() -> None:
    assert art.default_cache_dir({"XDG_CACHE_HOME": "/x/cache"}) == Path("/x/cache/kubeprem")
    assert art.default_cache_dir({}) == Path.home() / ".cache" / "kubeprem"
    # a relative XDG_CACHE_HOME is invalid per the spec and ignored
    assert art.default_cache_dir({"XDG_CACHE_HOME": "rel"}) == Path.home() / ".cache" / "kubeprem"


# -- the cache -------------------------------------------------------------------------


def _complete_set(cache: Path, version: str, source: str) -> Manifest:
    root = art.set_dir(cache, version)
    files = {}
    for s in art.specs_of(art.mirror_components(version)):
        p = root / s.cache_path
        p.parent.mkdir(parents=True, exist_ok=True)
        data = s.name.encode()
        p.write_bytes(data)
        files[s.name] = Entry(
            str(s.cache_path),
            hashlib.sha256(data).hexdigest(),
            len(data),
            "test",
            s.version,
            str(s.destination),
        )
    m = Manifest(version, source, files)
    write_manifest(root / "manifest.json", m)
    return m


def test_cached_set_reused(tmp_path: Path) -> None:
    _complete_set(tmp_path, "1.20.2", "debian-source")
    found = art.cached_set(tmp_path, "1.20.2", "debian-source", verify=True)
    assert found is not None and found.reused
    assert set(found.files) == set(art.ARTIFACT_NAMES)
    a = found.files["kube-apiserver"]
    assert a.path == tmp_path / "artifacts/1.20.2/bin/kube-apiserver"
    assert a.destination == PurePosixPath("/usr/local/bin/kube-apiserver")
    assert a.sha256 == hashlib.sha256(b"kube-apiserver").hexdigest()


def test_cached_set_incomplete_or_other_source(tmp_path: Path) -> None:
    _complete_set(tmp_path, "1.20.2", "debian-source")
    assert art.cached_set(tmp_path, "1.20.2", "mirror /srv/m") is None
    assert art.cached_set(tmp_path, "1.20.3", "debian-source") is None
    root = art.set_dir(tmp_path, "1.20.2")
    (root / "cni/bridge").write_bytes(b"bridgE")  # same size, other content
    assert art.cached_set(tmp_path, "1.20.2", "debian-source") is not None
    assert art.cached_set(tmp_path, "1.20.2", "debian-source", verify=True) is None
    (root / "bin/kubelet").unlink()
    assert art.cached_set(tmp_path, "1.20.2", "debian-source") is None
    (root / "manifest.json").write_text("{")
    assert art.cached_set(tmp_path, "1.20.2", "debian-source") is None


def test_commit_replaces_old_set(tmp_path: Path) -> None:
    _complete_set(tmp_path, "1.20.2", "old")
    staging = art.new_temp_set(tmp_path, "1.20.2")
    src = tmp_path / "payload"
    src.write_bytes(b"new etcd")
    spec = art.ArtifactSpec("etcd", "etcd", "3.4.23", "binary")
    entry = art.install_file(staging, spec, src, "test")
    assert entry.sha256 == hashlib.sha256(b"new etcd").hexdigest()
    result = art.commit_set(tmp_path, staging, Manifest("1.20.2", "new", {"etcd": entry}))
    assert result.files["etcd"].path.read_bytes() == b"new etcd"
    assert read_manifest(result.root / "manifest.json").source == "new"
    assert [p.name for p in (tmp_path / "artifacts").iterdir()] == ["1.20.2"]  # old set gone


def test_commit_refuses_staged_file_changed_after_hashing(tmp_path: Path) -> None:
    old = _complete_set(tmp_path, "1.20.2", "old")
    staging = art.new_temp_set(tmp_path, "1.20.2")
    src = tmp_path / "payload"
    src.write_bytes(b"etcd")
    spec = art.ArtifactSpec("etcd", "etcd", "3.4.23", "binary")
    entry = art.install_file(staging, spec, src, "test")
    (staging / "bin/etcd").write_bytes(b"ETCD")
    with pytest.raises(ManifestError, match="does not match"):
        art.commit_set(tmp_path, staging, Manifest("1.20.2", "new", {"etcd": entry}))
    assert read_manifest(art.set_dir(tmp_path, "1.20.2") / "manifest.json") == old


# -- ensure_artifacts without fetching ---------------------------------------------------


def test_debian_source_needs_1_20_2(tmp_path: Path) -> None:
    site = site_with_version("1.37.2", "debian-source")
    with pytest.raises(InputError, match=r"provides 1\.20\.2 only: use artifacts\.source: mirror"):
        art.ensure_artifacts(site, tmp_path, lambda _m: None)
    assert not (tmp_path / "artifacts").exists()


def test_mirror_without_address_is_input_error(example_site: Site, tmp_path: Path) -> None:
    site = example_site.model_copy(update={"artifacts": Artifacts(source="mirror")})
    with pytest.raises(InputError, match=r"artifacts\.mirror is not set"):
        art.ensure_artifacts(site, tmp_path, lambda _m: None)


def test_complete_cache_is_reused_without_work(legacy_site: Site, tmp_path: Path) -> None:
    _complete_set(tmp_path, "1.20.2", "debian-source")
    said: list[str] = []
    result = art.ensure_artifacts(legacy_site, tmp_path, said.append)
    assert result.reused
    assert said == [f"using cached artifacts in {tmp_path / 'artifacts/1.20.2'}"]
    assert not (tmp_path / "artifacts" / ".lock").exists()  # not even the lock was taken


def test_listing_mirror(legacy_site: Site) -> None:
    site = legacy_site.model_copy(
        update={"artifacts": Artifacts(source="mirror", mirror="https://m.example/k")}
    )
    rows = art.listing(site)
    assert [r.spec.name for r in rows] == list(art.ARTIFACT_NAMES)
    origin = {r.spec.name: r.origin for r in rows}
    assert origin["etcdctl"] == (
        "etcd/v3.4.13/etcd-v3.4.13-linux-amd64.tar.gz#etcd-v3.4.13-linux-amd64/etcdctl"
    )
    assert origin["runc"] == "runc/v1.1.5/runc.amd64"


def test_a_killed_run_leaves_no_set(tmp_path: Path) -> None:
    """A run killed mid-way leaves only its temporary folder: no set is seen,
    and the next writer removes it."""
    staging = art.new_temp_set(tmp_path, "1.20.2")
    (staging / "bin").mkdir()
    (staging / "bin/kube-apiserver").write_bytes(b"half")
    assert art.cached_set(tmp_path, "1.20.2", "debian-source") is None
    assert not art.set_dir(tmp_path, "1.20.2").exists()
    art.remove_stale_temps(tmp_path)
    assert list((tmp_path / "artifacts").iterdir()) == []

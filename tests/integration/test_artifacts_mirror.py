"""Artifacts for real: a mirror with the upstream layout served on loopback
(and read as a directory), a corrupted file refused, and the Debian source
build reused when this machine has one."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeprem.artifacts import cache as art
from kubeprem.artifacts import debian as deb
from kubeprem.artifacts.manifest import read_manifest, sha256_file
from kubeprem.artifacts.mirror import ChecksumMismatch
from kubeprem.cli.main import main
from kubeprem.site import example_text
from kubeprem.site.model import Artifacts, Site

pytestmark = pytest.mark.integration

VERSION = "1.20.2"  # etcd 3.4.13, containerd 1.6.20, runc 1.1.5, CNI plugins 1.1.1 (the table)


def _payload(name: str) -> bytes:
    return f"#!/bin/sh\necho fake {name}\n".encode()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))


def make_mirror(root: Path) -> None:
    """The upstream release files for 1.20.2, with dummy binaries inside."""
    k = root / f"kubernetes/release/v{VERSION}/bin/linux/amd64"
    k.mkdir(parents=True)
    for b in art.KUBERNETES_BINARIES:
        (k / b).write_bytes(_payload(b))
        (k / f"{b}.sha256").write_text(_sha(_payload(b)))  # bare digest, as dl.k8s.io

    e = root / "etcd/v3.4.13"
    e.mkdir(parents=True)
    d = "etcd-v3.4.13-linux-amd64"
    _tar(
        e / f"{d}.tar.gz",
        {
            f"{d}/etcd": _payload("etcd"),
            f"{d}/etcdctl": _payload("etcdctl"),
            f"{d}/README.md": b"x",
        },
    )
    (e / "SHA256SUMS").write_text(
        f"{'0' * 64}  etcd-v3.4.13-darwin-amd64.zip\n"
        f"{sha256_file(e / f'{d}.tar.gz')}  {d}.tar.gz\n"
        f"{'1' * 64}  etcd-v3.4.13-linux-arm64.tar.gz\n"
    )

    c = root / "containerd/v1.6.20"
    c.mkdir(parents=True)
    tgz = c / "containerd-1.6.20-linux-amd64.tar.gz"
    _tar(
        tgz,
        {
            f"bin/{b}": _payload(b)
            for b in ("containerd", "containerd-shim", "containerd-shim-runc-v2", "ctr")
        },
    )
    (c / f"{tgz.name}.sha256sum").write_text(f"{sha256_file(tgz)}  {tgz.name}\n")

    r = root / "runc/v1.1.5"
    r.mkdir(parents=True)
    (r / "runc.amd64").write_bytes(_payload("runc"))
    (r / "runc.sha256sum").write_text(
        f"{'2' * 64}  libseccomp-2.5.4.tar.gz\n"
        f"{_sha(_payload('runc'))}  runc.amd64\n"
        f"{'3' * 64}  runc.arm64\n"
    )

    n = root / "cni-plugins/v1.1.1"
    n.mkdir(parents=True)
    cni = n / "cni-plugins-linux-amd64-v1.1.1.tgz"
    _tar(cni, {f"./{p}": _payload(p) for p in ("bandwidth", *art.CNI_PLUGINS, "vlan")})
    (n / f"{cni.name}.sha256").write_text(f"{sha256_file(cni)}  {cni.name}\n")


class Server:
    def __init__(self, root: Path) -> None:
        requests: list[str] = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a: object, **kw: object) -> None:
                super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

            def log_message(self, format: str, *args: object) -> None:
                requests.append(self.path)

        self.requests = requests
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mirror"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[Path, Server]]:
    root = tmp_path / "www"
    make_mirror(root / "mirror")
    server = Server(root)
    try:
        yield root / "mirror", server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def _site(legacy_site: Site, mirror: str) -> Site:
    """The 1.20.2 example served from ``mirror`` (the fake release files are 1.20.2's)."""
    return legacy_site.model_copy(update={"artifacts": Artifacts(source="mirror", mirror=mirror)})


def _snapshot(cache: Path) -> dict[str, str]:
    return {
        str(p.relative_to(cache)): sha256_file(p)
        for p in sorted(cache.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_mirror_over_http_and_directory(
    mirror: tuple[Path, Server], legacy_site: Site, tmp_path: Path
) -> None:
    root, server = mirror
    said: list[str] = []
    cache = tmp_path / "cache"
    result = art.ensure_artifacts(_site(legacy_site, server.url), cache, said.append)

    assert not result.reused and result.root == cache / "artifacts" / VERSION
    assert set(result.files) == set(art.ARTIFACT_NAMES)
    for name, a in result.files.items():
        assert a.path.read_bytes() == _payload(name)
        assert a.sha256 == _sha(_payload(name)) and a.size == len(_payload(name))
        assert a.path.stat().st_mode & 0o111
    assert str(result.files["bridge"].destination) == "/opt/cni/bin/bridge"
    assert str(result.files["ctr"].destination) == "/usr/local/bin/ctr"
    assert result.files["etcd"].version == "3.4.13"
    assert result.files["etcdctl"].source.endswith(
        "etcd-v3.4.13-linux-amd64.tar.gz#etcd-v3.4.13-linux-amd64/etcdctl"
    )
    manifest = read_manifest(result.root / "manifest.json")
    assert manifest.source == f"mirror {server.url}"
    assert {n: e.sha256 for n, e in manifest.files.items()} == {
        n: _sha(_payload(n)) for n in art.ARTIFACT_NAMES
    }
    assert sorted(p.name for p in (cache / "artifacts").iterdir()) == [".lock", VERSION]
    assert any("fetching" in m for m in said)

    # a complete set is reused: no request reaches the mirror
    before = len(server.requests)
    again = art.ensure_artifacts(_site(legacy_site, server.url), cache, said.append, verify=True)
    assert again.reused and len(server.requests) == before

    # the same mirror as a directory gives the same files
    by_dir = art.ensure_artifacts(_site(legacy_site, str(root)), tmp_path / "c2", said.append)
    assert {n: a.sha256 for n, a in by_dir.files.items()} == {
        n: a.sha256 for n, a in result.files.items()
    }


@pytest.mark.parametrize(
    "victim",
    [
        f"kubernetes/release/v{VERSION}/bin/linux/amd64/kubelet",
        "etcd/v3.4.13/etcd-v3.4.13-linux-amd64.tar.gz",
    ],
)
def test_corrupted_file_is_refused_and_cache_unchanged(
    mirror: tuple[Path, Server], legacy_site: Site, tmp_path: Path, victim: str
) -> None:
    root, server = mirror
    cache = tmp_path / "cache"
    art.ensure_artifacts(_site(legacy_site, server.url), cache, lambda _m: None)
    before = _snapshot(cache)

    path = root / victim
    expected = sha256_file(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    actual = _sha(bytes(data))

    # the directory form of the mirror is another source: a new set is attempted
    for site in (_site(legacy_site, str(root)), _site(legacy_site, server.url + "/")):
        with pytest.raises(ChecksumMismatch) as err:
            art.ensure_artifacts(site, cache, lambda _m: None)
        msg = str(err.value)
        assert victim in msg and expected in msg and actual in msg
        assert "nothing was cached" in msg
        assert _snapshot(cache) == before
        assert sorted(p.name for p in (cache / "artifacts").iterdir()) == [".lock", VERSION]

    fresh = tmp_path / "fresh"
    with pytest.raises(ChecksumMismatch):
        art.ensure_artifacts(_site(legacy_site, server.url), fresh, lambda _m: None)
    assert not (fresh / "artifacts" / VERSION).exists()
    assert [p.name for p in (fresh / "artifacts").iterdir()] == [".lock"]


def test_cli_with_a_relative_mirror(
    mirror: tuple[Path, Server], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _server = mirror
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    shutil.copytree(root, site_dir / "mirror")
    text = re.sub(
        r"(?m)^  source: go-modules .*\n(  +#.*\n)*",
        "  source: mirror\n  mirror: mirror\n  cache: cache\n",
        example_text().replace('kubernetes_version: "1.37.2"', f'kubernetes_version: "{VERSION}"'),
    )
    assert "mirror: mirror" in text
    (site_dir / "site.yaml").write_text(text)
    site_file = str(site_dir / "site.yaml")

    assert main(["artifacts", site_file, "--list"]) == 0
    out = capsys.readouterr().out
    assert "etcd/v3.4.13/SHA256SUMS <- https://github.com/etcd-io/etcd/releases/download/" in out
    assert not (site_dir / "cache").exists()  # --list fetches nothing

    assert main(["artifacts", site_file]) == 0
    cap = capsys.readouterr()
    assert "kube-apiserver" in cap.out and _sha(_payload("kube-apiserver"))[:12] in cap.out
    assert "fetching" in cap.err
    assert (site_dir / "cache/artifacts" / VERSION / "manifest.json").is_file()

    (site_dir / "mirror/runc/v1.1.5/runc.amd64").write_bytes(b"tampered")
    shutil.rmtree(site_dir / "cache")
    assert main(["artifacts", site_file]) == 1
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "runc.amd64" in err


# -- the Debian source build ---------------------------------------------------------------


def _built_tree() -> Path | None:
    tree = deb.source_tree(art.default_cache_dir())
    out = tree / "_output" / "bin"
    if all(deb.binary_version_ok(out / b, deb.KUBERNETES_VERSION) for b in art.KUBERNETES_BINARIES):
        return tree
    return None


def test_debian_source_set_from_the_build(legacy_site: Site, tmp_path: Path) -> None:
    """Real binaries: the Kubernetes build this machine already has (CI runs
    `kubeprem artifacts` in its setup) and Debian's installed packages."""
    tree = _built_tree()
    if tree is None:
        pytest.skip(
            f"no finished Kubernetes {deb.KUBERNETES_VERSION} build in "
            f"{deb.source_tree(art.default_cache_dir())}/_output/bin: run "
            "`kubeprem artifacts SITE` with artifacts.source: debian-source first "
            "(10 minutes or more; CI does it during setup)"
        )
    missing = [p for p in deb.COMPONENT_OF_PACKAGE if deb.installed_version(p) is None]
    if missing:
        pytest.skip(f"Debian packages not installed: {' '.join(missing)}")
    cache = tmp_path / "cache"
    (cache / "src").mkdir(parents=True)
    (cache / "src" / tree.name).symlink_to(tree)  # reuse the build, copy into a new cache
    said: list[str] = []
    result = art.ensure_artifacts(legacy_site, cache, said.append)
    assert set(result.files) == set(art.ARTIFACT_NAMES)
    assert any("reusing the Kubernetes build" in m for m in said)
    for a in result.files.values():
        assert sha256_file(a.path) == a.sha256
    api = result.files["kube-apiserver"]
    out = subprocess.run([str(api.path), "--version"], capture_output=True, text=True, check=True)
    assert "v1.20.2" in out.stdout
    assert result.files["etcd"].version == deb.debian_upstream(
        deb.installed_version("etcd-server") or ""
    )
    assert str(result.files["runc"].destination) == "/usr/local/bin/runc"
    assert "debian source kubernetes 1.20.5+really1.20.2" in api.source

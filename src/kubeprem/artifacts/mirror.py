"""Artifacts from a mirror of the upstream release downloads, checked.

Called by ``kubeprem.artifacts.cache.ensure_artifacts`` when the site says
``artifacts.source: mirror``. A mirror is a directory or an HTTP(S) URL
(``BASE``) holding each project's release files under the path they have
upstream, below one folder per project::

    BASE/kubernetes/release/v<k8s>/bin/linux/amd64/<binary>         + <binary>.sha256
    BASE/etcd/v<etcd>/etcd-v<etcd>-linux-amd64.tar.gz               + v<etcd>/SHA256SUMS
    BASE/containerd/v<ver>/containerd-<ver>-linux-amd64.tar.gz      + <archive>.sha256sum
    BASE/runc/v<ver>/runc.amd64                                     + v<ver>/runc.sha256sum
    BASE/cni-plugins/v<ver>/cni-plugins-linux-amd64-v<ver>.tgz      + <archive>.sha256

Upstream these are https://dl.k8s.io/release/... and
https://github.com/<org>/<repo>/releases/download/v<ver>/...; ``kubeprem
artifacts SITE --list`` prints every file with its upstream address.

Every file is checked against its published checksum before anything is
taken from it; a mismatch raises ``ChecksumMismatch`` naming the file and
both digests, and nothing enters the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from kubeprem.artifacts.cache import (
    ArtifactSpec,
    Component,
    Progress,
    mirror_components,
    specs_of,
)
from kubeprem.artifacts.cache import install_file as _install
from kubeprem.artifacts.manifest import Entry, parse_checksums
from kubeprem.errors import InputError, OperationError

TIMEOUT_S = 60
HEARTBEAT_S = 10.0
_CHUNK = 1 << 20

UPSTREAM = {
    "kubernetes": "https://dl.k8s.io",
    "etcd": "https://github.com/etcd-io/etcd/releases/download",
    "containerd": "https://github.com/containerd/containerd/releases/download",
    "runc": "https://github.com/opencontainers/runc/releases/download",
    "cni-plugins": "https://github.com/containernetworking/plugins/releases/download",
}


class ChecksumMismatch(OperationError):
    """A mirrored file does not match its published SHA-256."""

    def __init__(self, location: str, expected: str, actual: str) -> None:
        self.location = location
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"checksum mismatch for {location}: published sha256 {expected}, "
            f"downloaded file has {actual}; refused, nothing was cached"
        )


@dataclass(frozen=True)
class MirrorFile:
    """One file to mirror, its checksum file, and what it provides.

    ``members`` maps artifact names to their path inside the archive, or is
    empty when the file is itself the artifact ``provides``."""

    component: str
    path: str
    checksum_path: str
    provides: tuple[str, ...]
    members: tuple[tuple[str, str], ...] = ()

    @property
    def filename(self) -> str:
        return PurePosixPath(self.path).name

    def upstream(self, rel: str) -> str:
        """The upstream address of ``rel`` (this file or its checksum)."""
        tail = rel.split("/", 1)[1]
        return f"{UPSTREAM[self.component]}/{tail}"


def layout(components: tuple[Component, ...]) -> list[MirrorFile]:
    """Every file a mirror must hold for these components, in install order."""
    out: list[MirrorFile] = []
    for c in components:
        v = c.version
        if c.name == "kubernetes":
            for b in c.artifacts:
                p = f"kubernetes/release/v{v}/bin/linux/amd64/{b}"
                out.append(MirrorFile(c.name, p, p + ".sha256", (b,)))
        elif c.name == "etcd":
            d = f"etcd-v{v}-linux-amd64"
            out.append(
                MirrorFile(
                    c.name,
                    f"etcd/v{v}/{d}.tar.gz",
                    f"etcd/v{v}/SHA256SUMS",
                    c.artifacts,
                    tuple((b, f"{d}/{b}") for b in c.artifacts),
                )
            )
        elif c.name == "containerd":
            p = f"containerd/v{v}/containerd-{v}-linux-amd64.tar.gz"
            out.append(
                MirrorFile(
                    c.name,
                    p,
                    p + ".sha256sum",
                    c.artifacts,
                    tuple((b, f"bin/{b}") for b in c.artifacts),
                )
            )
        elif c.name == "runc":
            out.append(
                MirrorFile(c.name, f"runc/v{v}/runc.amd64", f"runc/v{v}/runc.sha256sum", ("runc",))
            )
        else:
            p = f"cni-plugins/v{v}/cni-plugins-linux-amd64-v{v}.tgz"
            out.append(
                MirrorFile(
                    c.name, p, p + ".sha256", c.artifacts, tuple((b, b) for b in c.artifacts)
                )
            )
    return out


def is_url(base: str) -> bool:
    return urllib.parse.urlsplit(base).scheme in ("http", "https", "file")


def location(base: str, rel: str) -> str:
    if is_url(base):
        return base.rstrip("/") + "/" + urllib.parse.quote(rel)
    return str(Path(base) / rel)


def download(base: str, rel: str, dest: Path, progress: Progress | None = None) -> str:
    """Copy ``rel`` from the mirror to ``dest``; returns its SHA-256. Large
    or slow downloads report their progress every ``HEARTBEAT_S``."""
    where = location(base, rel)
    h = hashlib.sha256()
    done = 0
    last = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            if is_url(base):
                src: BinaryIO = stack.enter_context(
                    urllib.request.urlopen(where, timeout=TIMEOUT_S)
                )
            else:
                src = stack.enter_context(open(where, "rb"))
            out = stack.enter_context(open(dest, "wb"))
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if progress is not None and time.monotonic() - last >= HEARTBEAT_S:
                    progress(f"  {PurePosixPath(rel).name}: {done / 1e6:.0f} MB so far")
                    last = time.monotonic()
    except urllib.error.HTTPError as exc:
        raise OperationError(f"mirror: {where}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise OperationError(f"mirror: {where}: {exc.reason}") from exc
    except OSError as exc:
        raise OperationError(f"mirror: {where}: {exc.strerror or exc}") from exc
    return h.hexdigest()


def published_digest(base: str, f: MirrorFile, scratch: Path) -> str:
    tmp = scratch / (PurePosixPath(f.checksum_path).name + ".txt")
    download(base, f.checksum_path, tmp)
    text = tmp.read_text(encoding="utf-8", errors="replace")
    digest = parse_checksums(text, f.filename)
    if digest is None:
        raise OperationError(
            f"mirror: {location(base, f.checksum_path)} has no SHA-256 for {f.filename}"
        )
    return digest


def fetch_all(base: str, version: str, staging: Path, progress: Progress) -> dict[str, Entry]:
    """Download, check and unpack every artifact into ``staging``."""
    if not is_url(base) and not Path(base).is_dir():
        raise InputError(f"artifacts.mirror: {base} is neither an http(s) URL nor a directory")
    components = mirror_components(version)
    specs = {s.name: s for s in specs_of(components)}
    scratch = staging / ".download"
    scratch.mkdir()
    entries: dict[str, Entry] = {}
    for f in layout(components):
        where = location(base, f.path)
        expected = published_digest(base, f, scratch)
        local = scratch / f.filename
        progress(f"fetching {where}")
        actual = download(base, f.path, local, progress)
        if actual != expected:
            local.unlink()
            raise ChecksumMismatch(where, expected, actual)
        if not f.members:
            (name,) = f.provides
            entries[name] = _install(staging, specs[name], local, f"mirror {where}")
        else:
            entries.update(_unpack(local, where, f, staging, specs, scratch))
        local.unlink()
    shutil.rmtree(scratch)
    return entries


def _unpack(
    archive: Path,
    where: str,
    f: MirrorFile,
    staging: Path,
    specs: dict[str, ArtifactSpec],
    scratch: Path,
) -> dict[str, Entry]:
    """Take the named members out of a checked archive (never extractall:
    member names are matched, so no path in the archive is trusted)."""
    out: dict[str, Entry] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            by_name = {os.path.normpath(m.name): m for m in tar.getmembers()}
            for name, member_path in f.members:
                m = by_name.get(os.path.normpath(member_path))
                if m is None or not m.isfile():
                    raise OperationError(f"mirror: {where} has no file {member_path}")
                src = tar.extractfile(m)
                if src is None:
                    raise OperationError(f"mirror: {where}: cannot read {member_path}")
                tmp = scratch / f"member-{name}"
                with src, open(tmp, "wb") as out_fh:
                    shutil.copyfileobj(src, out_fh, _CHUNK)
                out[name] = _install(staging, specs[name], tmp, f"mirror {where}#{member_path}")
                tmp.unlink()
    except tarfile.TarError as exc:
        raise OperationError(f"mirror: {where}: not a readable archive: {exc}") from exc
    return out

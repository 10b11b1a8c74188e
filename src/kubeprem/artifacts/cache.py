"""The binaries a site's nodes run, checked and kept in a local cache.

Called by ``kubeprem artifacts`` and by the workflows that push binaries to
nodes (nodes never download anything). Two sources, chosen in the site file:

- ``mirror``: a directory or HTTP(S) URL laid out like the upstream release
  downloads (see ``kubeprem.artifacts.mirror`` for the exact layout);
  every file is checked against its published SHA-256 before it is cached.
- ``debian-source``: Kubernetes built from Debian's source package (bookworm:
  1.20.2, vendored, builds offline) plus the binaries of Debian's etcd,
  containerd, runc and CNI plugin packages (``kubeprem.artifacts.debian``).

Cache layout (outside the repository; default ``~/.cache/kubeprem``)::

    <cache>/artifacts/<version>/manifest.json     written last: its presence marks a complete set
    <cache>/artifacts/<version>/bin/<binary>      -> /usr/local/bin/<binary> on a node
    <cache>/artifacts/<version>/cni/<plugin>      -> /opt/cni/bin/<plugin> on a node
    <cache>/artifacts/.tmp-<version>-*/           a set being assembled (removed when done)
    <cache>/src/kubernetes-<debian upstream>/     Debian's source tree; its build in _output/bin

A set is assembled in a temporary folder, checked, then renamed into place,
so a killed run never leaves a half set behind; a complete set is reused.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from kubeprem.artifacts.manifest import (
    MANIFEST_NAME,
    Entry,
    Manifest,
    ManifestError,
    read_manifest,
    sha256_file,
    write_manifest,
)
from kubeprem.errors import InputError
from kubeprem.site.model import Site

Progress = Callable[[str], None]
"""Receives one line per step, and a heartbeat during long steps."""

Kind = Literal["binary", "cni"]

KUBERNETES_BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)
ETCD_BINARIES = ("etcd", "etcdctl")
ETCDUTL = "etcdutl"  # etcd 3.6 and later (Features.etcdutl)
CONTAINERD_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr")
RUNC_BINARIES = ("runc",)
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")

NODE_BIN_DIR = PurePosixPath("/usr/local/bin")
NODE_CNI_DIR = PurePosixPath("/opt/cni/bin")


@dataclass(frozen=True)
class Component:
    """A group of artifacts released together under one version."""

    # coredns: built for its container image (kubeprem.images), not pushed as a file
    name: Literal["kubernetes", "etcd", "containerd", "runc", "cni-plugins", "coredns"]
    version: str
    artifacts: tuple[str, ...]
    kind: Kind = "binary"


@dataclass(frozen=True)
class ArtifactSpec:
    """One artifact a site needs, before anything is fetched."""

    name: str
    component: str
    version: str
    kind: Kind

    @property
    def cache_path(self) -> PurePosixPath:
        """Relative to ``<cache>/artifacts/<version>/``."""
        return PurePosixPath("bin" if self.kind == "binary" else "cni") / self.name

    @property
    def destination(self) -> PurePosixPath:
        """Where the file goes on a node."""
        return (NODE_BIN_DIR if self.kind == "binary" else NODE_CNI_DIR) / self.name


@dataclass(frozen=True)
class Artifact:
    """One checked file in the cache."""

    name: str
    version: str
    path: Path
    sha256: str
    size: int
    source: str
    destination: PurePosixPath


@dataclass(frozen=True)
class ArtifactSet:
    """The complete, checked set of binaries for one Kubernetes version."""

    kubernetes_version: str
    source: str
    root: Path
    files: Mapping[str, Artifact]
    reused: bool = False


def mirror_components(version: str) -> tuple[Component, ...]:
    """What a mirror must provide for Kubernetes ``version`` (``1.20.2``):
    the other components' versions come from the per-version table."""
    # imported here: importing the version table first would close an
    # import cycle through kubeprem.site
    from kubeprem.components.versions import TABLE, supported_text

    major, minor, _ = version.split(".")
    row = TABLE.get((int(major), int(minor)))
    if row is None:
        raise InputError(f"Kubernetes {version} is not supported; supported: {supported_text()}")
    return (
        Component("kubernetes", version, KUBERNETES_BINARIES),
        Component(
            "etcd", row.etcd_version, (*ETCD_BINARIES, ETCDUTL) if row.etcdutl else ETCD_BINARIES
        ),
        Component("containerd", row.containerd_version, CONTAINERD_BINARIES),
        Component("runc", row.runc_version, RUNC_BINARIES),
        Component("cni-plugins", row.cni_plugins_version, CNI_PLUGINS, kind="cni"),
    )


def specs_of(components: tuple[Component, ...]) -> list[ArtifactSpec]:
    return [
        ArtifactSpec(name, c.name, c.version, c.kind) for c in components for name in c.artifacts
    ]


ARTIFACT_NAMES: tuple[str, ...] = (
    *KUBERNETES_BINARIES,
    *ETCD_BINARIES,
    *CONTAINERD_BINARIES,
    *RUNC_BINARIES,
    *CNI_PLUGINS,
)


def artifact_names(version: str) -> tuple[str, ...]:
    """Every artifact of ``version``'s set: ``ARTIFACT_NAMES``, and etcdutl
    where its etcd has one."""
    return tuple(s.name for s in specs_of(mirror_components(version)))


# -- where things are --------------------------------------------------------


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/kubeprem``, else ``~/.cache/kubeprem``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "kubeprem"


def set_dir(cache_dir: Path, version: str) -> Path:
    return cache_dir / "artifacts" / version


# -- the cache -------------------------------------------------------------------


def artifact_set_from(manifest: Manifest, root: Path, *, reused: bool) -> ArtifactSet:
    files = {
        name: Artifact(
            name=name,
            version=e.version,
            path=root / e.path,
            sha256=e.sha256,
            size=e.size,
            source=e.source,
            destination=PurePosixPath(e.destination),
        )
        for name, e in manifest.files.items()
    }
    return ArtifactSet(manifest.kubernetes_version, manifest.source, root, files, reused)


def cached_set(
    cache_dir: Path, version: str, source: str, *, verify: bool = False
) -> ArtifactSet | None:
    """The complete cached set for ``version`` from ``source``, or None.

    Complete means: a manifest naming every artifact, each file present with
    its recorded size (and, with ``verify``, its recorded SHA-256)."""
    root = set_dir(cache_dir, version)
    try:
        manifest = read_manifest(root / MANIFEST_NAME)
    except FileNotFoundError:
        return None
    except ManifestError:
        return None
    if manifest.kubernetes_version != version or manifest.source != source:
        return None
    if set(manifest.files) != set(artifact_names(version)):
        return None
    for e in manifest.files.values():
        p = root / e.path
        try:
            if p.stat().st_size != e.size:
                return None
        except OSError:
            return None
        if verify and sha256_file(p) != e.sha256:
            return None
    return artifact_set_from(manifest, root, reused=True)


@contextmanager
def cache_lock(cache_dir: Path, progress: Progress) -> Iterator[None]:
    """One writer per cache; a second run waits for the first."""
    folder = cache_dir / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another kubeprem run using {folder}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_stale_temps(cache_dir: Path) -> None:
    """Temporary folders of killed runs (called with the cache lock held)."""
    for p in (cache_dir / "artifacts").glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in (cache_dir / "artifacts").glob(".old-*"):
        shutil.rmtree(p, ignore_errors=True)


def new_temp_set(cache_dir: Path, version: str) -> Path:
    (cache_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=cache_dir / "artifacts"))


def install_file(staging: Path, spec: ArtifactSpec, src: Path, source: str) -> Entry:
    """Copy ``src`` into the staging set as ``spec`` and describe it."""
    dest = staging / spec.cache_path
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    dest.chmod(0o755)
    return Entry(
        path=str(spec.cache_path),
        sha256=sha256_file(dest),
        size=dest.stat().st_size,
        source=source,
        version=spec.version,
        destination=str(spec.destination),
    )


def commit_set(cache_dir: Path, staging: Path, manifest: Manifest) -> ArtifactSet:
    """Check the staged files against ``manifest``, write it, and move the
    staged set into place, replacing an older one."""
    for name, e in manifest.files.items():
        p = staging / e.path
        if not p.is_file() or p.stat().st_size != e.size or sha256_file(p) != e.sha256:
            raise ManifestError(f"staged {name} at {p} does not match its manifest entry")
    write_manifest(staging / MANIFEST_NAME, manifest)
    final = set_dir(cache_dir, manifest.kubernetes_version)
    if final.exists():
        old = cache_dir / "artifacts" / f".old-{final.name}-{os.getpid()}-{time.time_ns()}"
        final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(final)
    return artifact_set_from(manifest, final, reused=False)


# -- the entry point ---------------------------------------------------------------


def source_key(site: Site, mirror: str | None) -> str:
    """What the manifest records as the set's source: a reused set must
    come from the source the site asks for."""
    if site.artifacts.source == "mirror":
        return f"mirror {mirror or site.artifacts.mirror}"
    return site.artifacts.source


def ensure_artifacts(
    site: Site,
    cache_dir: Path,
    progress: Progress,
    *,
    mirror: str | None = None,
    verify: bool = False,
) -> ArtifactSet:
    """The checked binaries for ``site``'s Kubernetes version, from the cache
    when complete, else fetched or built from the site's source.

    ``mirror`` overrides ``site.artifacts.mirror`` (the CLI passes it resolved
    against the site file's folder). ``verify`` re-hashes a reused set.
    """
    # imported here: these modules import this one
    from kubeprem.artifacts import debian as artifacts_debian
    from kubeprem.artifacts import gomod
    from kubeprem.artifacts import mirror as artifacts_mirror

    version = site.cluster.version
    key = source_key(site, mirror)
    if site.artifacts.source == "debian-source":
        artifacts_debian.check_version(version)
    elif site.artifacts.source == "go-modules":
        gomod.check_version(version)
    elif not (mirror or site.artifacts.mirror):
        raise InputError("artifacts.source is 'mirror' but artifacts.mirror is not set")
    found = cached_set(cache_dir, version, key, verify=verify)
    if found is not None:
        progress(f"using cached artifacts in {found.root}")
        return found
    with cache_lock(cache_dir, progress):
        found = cached_set(cache_dir, version, key, verify=verify)
        if found is not None:
            progress(f"using cached artifacts in {found.root}")
            return found
        remove_stale_temps(cache_dir)
        staging = new_temp_set(cache_dir, version)
        try:
            if site.artifacts.source == "mirror":
                base = mirror or site.artifacts.mirror or ""
                entries = artifacts_mirror.fetch_all(base, version, staging, progress)
            elif site.artifacts.source == "go-modules":
                entries = gomod.gather_all(version, cache_dir, staging, progress)
            else:
                entries = artifacts_debian.gather_all(version, cache_dir, staging, progress)
            manifest = Manifest(kubernetes_version=version, source=key, files=entries)
            result = commit_set(cache_dir, staging, manifest)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    progress(f"artifacts ready in {result.root}")
    return result


# -- what a site needs, without fetching (for --list) -------------------------------


@dataclass(frozen=True)
class Listed:
    """One artifact a site needs and where it comes from."""

    spec: ArtifactSpec
    origin: str


def listing(site: Site) -> list[Listed]:
    """Every artifact ``site`` needs, with its origin for the site's source."""
    from kubeprem.artifacts import debian as artifacts_debian
    from kubeprem.artifacts import gomod
    from kubeprem.artifacts import mirror as artifacts_mirror

    version = site.cluster.version
    if site.artifacts.source == "go-modules":
        gomod.check_version(version)
        origin = gomod.listing_origin(version)
        return [Listed(s, origin[s.name]) for s in specs_of(mirror_components(version))]
    if site.artifacts.source == "debian-source":
        artifacts_debian.check_version(version)
        out = [
            Listed(
                ArtifactSpec(b, "kubernetes", version, "binary"),
                f"built from Debian source package {artifacts_debian.SOURCE_PACKAGE} "
                f"{artifacts_debian.SOURCE_UPSTREAM}",
            )
            for b in KUBERNETES_BINARIES
        ]
        for name, (pkg, folder) in artifacts_debian.DEBIAN_BINARIES.items():
            kind: Kind = "cni" if folder == "/usr/lib/cni" else "binary"
            comp = artifacts_debian.COMPONENT_OF_PACKAGE[pkg]
            installed = artifacts_debian.installed_version(pkg)
            shown = artifacts_debian.debian_upstream(installed) if installed else "not installed"
            spec = ArtifactSpec(name, comp, shown, kind)
            out.append(Listed(spec, f"Debian package {pkg}: {folder}/{name}"))
        return out
    components = mirror_components(version)
    specs = {s.name: s for s in specs_of(components)}
    rows: list[Listed] = []
    for f in artifacts_mirror.layout(components):
        members = dict(f.members)
        for name in f.provides:
            where = f.path + (f"#{members[name]}" if name in members else "")
            rows.append(Listed(specs[name], where))
    return rows


__all__ = [
    "ARTIFACT_NAMES",
    "CNI_PLUGINS",
    "KUBERNETES_BINARIES",
    "Artifact",
    "ArtifactSet",
    "ArtifactSpec",
    "Component",
    "Listed",
    "Progress",
    "artifact_names",
    "cached_set",
    "default_cache_dir",
    "ensure_artifacts",
    "listing",
    "mirror_components",
    "set_dir",
    "specs_of",
]

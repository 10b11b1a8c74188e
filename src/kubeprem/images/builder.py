"""Build the catalogue's images into a cache of archives, and hand them to apply.

Called by ``kubeprem images build|list`` and by apply (``image_archives``),
which pushes each archive to every node and runs
``ctr -n k8s.io images import`` there.

Cache layout (outside the repository; ``KUBEPREM_IMAGES_CACHE`` or
``$XDG_CACHE_HOME/kubeprem/images``, default ``~/.cache/kubeprem/images``)::

    lock                          held while building
    base/bookworm-minbase/
        rootfs/                   debootstrap --variant=minbase, host's sources, upgraded
        layer.tar                 the shared base layer (same bytes in every image)
        base.json                 its digest and packages
    archives/NAME.tar             one image archive per catalogue entry
    archives/NAME.json            ref, digests, size, packages, and the build key
    tmp/                          builds in progress, renamed into place when done

An archive is reused while its key is unchanged: the key hashes the catalogue
entry, the reference, the base layer's digest and the exact package versions
``apt-get install --simulate`` picks (for pause: pause.c and gcc's version;
for busybox: the busybox-static version; for a ``go`` image: its build
module's go.mod and go.sum, flags and Go version, and its base files).
The ``go`` images' module and build caches are the artifacts' (``~/.cache/kubeprem/go``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubeprem.artifacts import gomod
from kubeprem.artifacts.cache import default_cache_dir
from kubeprem.errors import InputError, OperationError, PrerequisiteError
from kubeprem.images import rootfs
from kubeprem.images.archive import (
    Entry,
    ImageConfig,
    Layer,
    read_archive,
    write_image_archive,
    write_layer,
)
from kubeprem.images.catalogue import CATALOGUE, DEFAULT_REGISTRY, SUITE, ImageSpec, by_name
from kubeprem.site.model import Site

BUILDER_VERSION = "1"  # bump when the way layers are made changes
BASE_NAME = f"{SUITE}-minbase"
PAUSE_C = "build/pause/linux/pause.c"
DEFAULT_K8S_SRC_GLOB = f"kubernetes-*/{PAUSE_C}"

Progress = Callable[[str], None]
# makes an image's layers in a temporary folder: (layers, config user, packages)
Maker = Callable[[Path], tuple[list[Layer], str, dict[str, str]]]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class ImageArchive:
    """One archive apply imports on every node."""

    name: str  # catalogue name, or the reference for an operator's archive
    ref: str
    path: Path
    digest: str  # manifest digest, as `ctr images ls` shows it
    config_digest: str  # image id, as `crictl images` shows it
    size: int


@dataclass(frozen=True)
class ImageStatus:
    """A catalogue entry and its archive in the cache, if built and current."""

    spec: ImageSpec
    ref: str
    archive: ImageArchive | None
    stale: bool  # an archive exists but was built for another reference


def default_cache() -> Path:
    if env := os.environ.get("KUBEPREM_IMAGES_CACHE"):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "kubeprem" / "images"


def image_refs(
    site: Site | None = None,
    registry: str = DEFAULT_REGISTRY,
    refs: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Catalogue name -> image reference. pause is named after containerd's
    sandbox_image for the site's Kubernetes version (without a site: the newest
    release, the one ``kubeprem init`` writes);
    ``refs`` renames single images, ``registry`` replaces kubeprem.local."""
    # imported here: kubeprem.components.versions imported first, before
    # kubeprem.site, runs into the site package's import cycle
    from kubeprem.components.versions import TABLE, features

    pause = features(site).pause_image if site is not None else TABLE[max(TABLE)].pause_image
    out = {s.name: s.default_ref(registry) for s in CATALOGUE}
    out["pause"] = pause
    for name, ref in (refs or {}).items():
        if name not in out:
            raise InputError(f"no image {name!r} in the catalogue; known: {', '.join(out)}")
        out[name] = ref
    return out


def _select(names: Sequence[str] | None) -> list[ImageSpec]:
    if not names:
        return list(CATALOGUE)
    unknown = [n for n in names if n not in {s.name for s in CATALOGUE}]
    if unknown:
        known = ", ".join(s.name for s in CATALOGUE)
        raise InputError(f"unknown image {', '.join(unknown)}; the catalogue has: {known}")
    return [by_name(n) for n in dict.fromkeys(names)]


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def upstream_version(debian_version: str) -> str:
    """``5:7.0.15-1~deb12u10`` -> ``7.0.15``; ``2.42.0+ds-5`` -> ``2.42.0``."""
    v = debian_version.split(":", 1)[-1]
    if "-" in v:
        v = v.rsplit("-", 1)[0]
    return v.split("+", 1)[0].split("~", 1)[0]


def check_tag(spec: ImageSpec, versions: Mapping[str, str]) -> None:
    """The tag must start with the upstream version of ``version_of``."""
    if spec.version_of is None:
        return
    version = versions.get(spec.version_of)
    if version is None:
        raise OperationError(f"{spec.name}: package {spec.version_of} would not be installed")
    upstream = upstream_version(version)
    if not spec.tag.startswith(upstream + "-") and spec.tag != upstream:
        raise OperationError(
            f"{spec.name}: the catalogue's tag {spec.tag} does not match Debian's "
            f"{spec.version_of} {version}; update the tag in kubeprem/images/catalogue.py"
        )


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _config(spec: ImageSpec, user: str) -> ImageConfig:
    return ImageConfig(
        entrypoint=spec.entrypoint,
        cmd=spec.cmd,
        user=user,
        env=spec.env,
        ports=spec.ports,
        workdir=spec.workdir,
        labels=(
            ("org.opencontainers.image.title", spec.name),
            ("org.opencontainers.image.description", spec.contains),
            ("org.opencontainers.image.version", spec.tag),
        ),
        architecture=_arch(),
    )


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _archive_from_meta(name: str, meta: Mapping[str, Any], path: Path) -> ImageArchive:
    return ImageArchive(
        name=name,
        ref=meta["ref"],
        path=path,
        digest=meta["manifest_digest"],
        config_digest=meta["config_digest"],
        size=meta["size"],
    )


class Builder:
    """Builds catalogue images into one cache folder (see the module docstring)."""

    def __init__(
        self,
        cache: Path | None = None,
        kubernetes_src: Path | None = None,
        progress: Progress = _quiet,
        detail: Progress = _quiet,
        go_cache: Path | None = None,
    ) -> None:
        self.cache = cache or default_cache()
        # the Go module and build caches live under <go_cache>/go, shared with
        # the cluster's binaries (kubeprem.artifacts.gomod)
        self.go_cache = go_cache or default_cache_dir()
        self.kubernetes_src = kubernetes_src
        self.progress = progress
        self.detail = detail
        self.archives = self.cache / "archives"
        self.base_dir = self.cache / "base" / BASE_NAME

    # -- cache ------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        for d in (self.cache, self.archives, self.cache / "tmp", self.base_dir.parent):
            d.mkdir(parents=True, exist_ok=True)
        with (self.cache / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    @contextmanager
    def _tmpdir(self, name: str) -> Iterator[Path]:
        tmp = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=self.cache / "tmp"))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def meta(self, name: str) -> dict[str, Any] | None:
        path = self.archives / f"{name}.json"
        tar = self.archives / f"{name}.tar"
        if not path.exists() or not tar.exists():
            return None
        doc: dict[str, Any] = json.loads(path.read_text())
        return doc

    # -- base -------------------------------------------------------------

    def base(self, refresh: bool = False) -> tuple[Path, Layer]:
        """The cached debootstrap rootfs and its layer, built if missing."""
        rootfs_dir = self.base_dir / "rootfs"
        layer_path = self.base_dir / "layer.tar"
        if refresh and self.base_dir.exists():
            old = Path(tempfile.mkdtemp(prefix="old-base.", dir=self.cache / "tmp"))
            self.base_dir.rename(old / "base")
            shutil.rmtree(old, ignore_errors=True)
        if not (self.base_dir / "base.json").exists():
            self._require_root("build the Debian base")
            self.progress(f"base: debootstrap --variant=minbase {SUITE} (about 70 s, once)")
            with self._tmpdir("base") as tmp:
                work = tmp / "base"
                work.mkdir()
                rootfs.debootstrap(work / "rootfs", SUITE, rootfs.host_sources(), self.detail)
                self.progress("base: writing the shared base layer")
                layer = write_layer(
                    rootfs.tree_entries(work / "rootfs"),
                    work / "layer.tar",
                    f"debootstrap --variant=minbase {SUITE}",
                )
                packages = rootfs.installed_packages(work / "rootfs")
                _write_json(
                    work / "base.json",
                    {"digest": layer.digest, "size": layer.size, "packages": packages},
                )
                if self.base_dir.exists():
                    shutil.rmtree(self.base_dir)
                work.rename(self.base_dir)
        info = json.loads((self.base_dir / "base.json").read_text())
        layer = Layer(
            layer_path, info["digest"], info["size"], f"debootstrap --variant=minbase {SUITE}"
        )
        return rootfs_dir, layer

    # -- images -----------------------------------------------------------

    def build(
        self, specs: Sequence[ImageSpec], refs: Mapping[str, str], refresh_base: bool = False
    ) -> list[ImageArchive]:
        with self._locked():
            if refresh_base and any(s.source == "apt" for s in specs):
                self.base(refresh=True)
            return [self._build_one(spec, refs[spec.name]) for spec in specs]

    def _build_one(self, spec: ImageSpec, ref: str) -> ImageArchive:
        if spec.source == "pause":
            key, versions, make = self._pause(spec, ref)
        elif spec.source == "file":
            key, versions, make = self._files(spec, ref)
        elif spec.source == "go":
            key, versions, make = self._go(spec, ref)
        else:
            key, versions, make = self._apt(spec, ref)
        tar = self.archives / f"{spec.name}.tar"
        meta = self.meta(spec.name)
        if meta is not None and meta.get("key") == key:
            self.progress(f"{spec.name}: up to date ({ref})")
            return _archive_from_meta(spec.name, meta, tar)
        self.progress(f"{spec.name}: building {ref}")
        with self._tmpdir(spec.name) as tmp:
            layers, user, packages = make(tmp)
            out = tmp / "image.tar"
            info = write_image_archive(out, ref, _config(spec, user), layers)
            size = out.stat().st_size
            out.rename(tar)
        meta = {
            "name": spec.name,
            "ref": ref,
            "key": key,
            "config_digest": info.config_digest,
            "manifest_digest": info.manifest_digest,
            "size": size,
            "layers": [
                {"digest": la.digest, "size": la.size, "comment": la.comment} for la in layers
            ],
            "user": user,
            "packages": packages or versions,
            "spec": asdict(spec),
        }
        _write_json(self.archives / f"{spec.name}.json", meta)
        self.progress(f"{spec.name}: {info.manifest_digest} {size / 1e6:.1f} MB")
        return _archive_from_meta(spec.name, meta, tar)

    def _pause(self, spec: ImageSpec, ref: str) -> tuple[str, dict[str, str], Maker]:
        source = self._pause_source()
        gcc = shutil.which("gcc")
        if gcc is None:
            raise PrerequisiteError("gcc is not installed: apt-get install gcc libc6-dev")
        gcc_version = subprocess.run(
            [gcc, "--version"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[0]
        tag = _makefile_tag(source.parent.parent / "Makefile")
        cflags = ["-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{tag}-debian"]
        versions = {"pause.c": hashlib.sha256(source.read_bytes()).hexdigest(), "gcc": gcc_version}
        key = _key(BUILDER_VERSION, asdict(spec), ref, versions, cflags)

        def make(tmp: Path) -> tuple[list[Layer], str, dict[str, str]]:
            binary = tmp / "pause"
            rootfs.run("compile pause.c", [gcc, *cflags, "-o", str(binary), str(source)])
            rootfs.run("strip pause", ["strip", str(binary)])
            layer = write_layer(
                [Entry("pause", "file", 0o755, source=binary)],
                tmp / "layer.tar",
                f"gcc {' '.join(cflags)} pause.c (Kubernetes pause {tag})",
            )
            return [layer], spec.user, versions

        return key, versions, make

    def _pause_source(self) -> Path:
        """pause.c: from ``--kubernetes-src``; else from the newest Kubernetes
        module the Go builds fetched (``kubeprem artifacts`` on a go-modules
        site); else from Debian's unpacked source (the legacy 1.20 path)."""
        if self.kubernetes_src is not None:
            candidates = [self.kubernetes_src / "build/pause/linux/pause.c"]
        else:
            xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
            root = Path(xdg) / "kubeprem"
            candidates = pause_sources(root / "go" / "mod", root / "src")
        for c in candidates:
            if c.is_file():
                return c
        where = (
            self.kubernetes_src
            or "~/.cache/kubeprem/go/mod/k8s.io/kubernetes@v*/, ~/.cache/kubeprem/src/kubernetes-*/"
        )
        raise PrerequisiteError(
            f"pause.c not found (looked in {where}); run `kubeprem artifacts SITE` for a site "
            "whose artifacts.source is go-modules (it fetches the Kubernetes module), or unpack "
            "Debian's kubernetes source: add a deb-src entry for bookworm to "
            "/etc/apt/sources.list.d/debian.sources (Types: deb deb-src, same URIs and Suites), "
            "run apt-get update, then `mkdir -p ~/.cache/kubeprem/src && cd "
            "~/.cache/kubeprem/src && apt-get source kubernetes`, or pass --kubernetes-src DIR"
        )

    @staticmethod
    def _host_packages(spec: ImageSpec) -> dict[str, str]:
        """The installed versions of ``spec.packages`` on this machine."""
        versions: dict[str, str] = {}
        for package in spec.packages:
            res = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Version}", package],
                capture_output=True,
                text=True,
                check=False,
            )
            if res.returncode != 0 or not res.stdout:
                raise PrerequisiteError(
                    f"{spec.name}: Debian package {package} is not installed on this "
                    f"machine: apt-get install {package}"
                )
            versions[package] = res.stdout.strip()
        return versions

    @staticmethod
    def _file_entries(files: Sequence[tuple[Path, str, int]]) -> list[Entry]:
        """Layer entries for (source, image path, mode), with their folders."""
        entries: dict[str, Entry] = {}
        for src, dst, mode in files:
            rel = dst.strip("/")
            parts = rel.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                entries[d] = Entry(d, "dir", 0o755)
            entries[rel] = Entry(rel, "file", mode, source=src)
        return list(entries.values())

    def _files(self, spec: ImageSpec, ref: str) -> tuple[str, dict[str, str], Maker]:
        versions = self._host_packages(spec)
        check_tag(spec, versions)
        hashes = {
            dst: hashlib.sha256(Path(src).read_bytes()).hexdigest() for src, dst in spec.files
        }
        key = _key(BUILDER_VERSION, asdict(spec), ref, versions, hashes)

        def make(tmp: Path) -> tuple[list[Layer], str, dict[str, str]]:
            layer = write_layer(
                self._file_entries([(Path(src), dst, 0o755) for src, dst in spec.files]),
                tmp / "layer.tar",
                f"{', '.join(spec.packages)} {versions}",
            )
            return [layer], spec.user, versions

        return key, versions, make

    def _go(self, spec: ImageSpec, ref: str) -> tuple[str, dict[str, str], Maker]:
        assert spec.go_build is not None, f"{spec.name}: source go names no go_build"
        command, version = spec.go_build
        build = gomod.image_build(command, version)
        versions = {command: version, **self._host_packages(spec)}
        check_tag(spec, versions)
        go = gomod.toolchain([build])
        hashes = {
            dst: hashlib.sha256(Path(src).read_bytes()).hexdigest() for src, dst in spec.files
        }
        key = _key(BUILDER_VERSION, asdict(spec), ref, versions, hashes, gomod.build_key(build, go))

        def make(tmp: Path) -> tuple[list[Layer], str, dict[str, str]]:
            out = tmp / "go"
            out.mkdir()
            built = gomod.build_commands(build, go, self.go_cache, out, self.progress)
            files = [(Path(src), dst, 0o644) for src, dst in spec.files]
            layer = write_layer(
                self._file_entries([*files, (built[command], f"/{command}", 0o755)]),
                tmp / "layer.tar",
                f"go build {build.module}@v{version} ({build.folder}/go.sum) on "
                f"{', '.join(f'{p} {v}' for p, v in versions.items() if p != command)}",
            )
            return [layer], spec.user, versions

        return key, versions, make

    def _apt(self, spec: ImageSpec, ref: str) -> tuple[str, dict[str, str], Maker]:
        self._require_root(f"build {spec.name} (chroot, apt-get)")
        base_root, base_layer = self.base()
        plan = rootfs.simulate_install(base_root, spec.packages)
        versions = dict(line.split(" ", 1) for line in plan)
        base_packages = json.loads((self.base_dir / "base.json").read_text())["packages"]
        check_tag(spec, {**base_packages, **versions})
        key = _key(BUILDER_VERSION, asdict(spec), ref, base_layer.digest, plan)

        def make(tmp: Path) -> tuple[list[Layer], str, dict[str, str]]:
            work = tmp / "rootfs"
            self.progress(
                f"{spec.name}: copying the base, apt-get install {' '.join(spec.packages)}"
            )
            rootfs.run("copy the base", ["cp", "-a", "--reflink=auto", str(base_root), str(work)])
            rootfs.install(work, spec.packages, spec.force_remove, spec.remove, self.detail)
            user = rootfs.resolve_user(work, spec.user)
            installed = rootfs.installed_packages(work)
            added = {p: v for p, v in installed.items() if base_packages.get(p) != v}
            self.progress(f"{spec.name}: writing its layer ({len(added)} packages)")
            layer = write_layer(
                rootfs.diff_entries(base_root, work),
                tmp / "layer.tar",
                f"apt-get install --no-install-recommends {' '.join(spec.packages)}",
            )
            shutil.rmtree(work)
            return [base_layer, layer], user, added

        return key, versions, make

    @staticmethod
    def _require_root(what: str) -> None:
        if os.geteuid() != 0:
            raise PrerequisiteError(f"to {what} kubeprem must run as root (chroot, mount)")


def _release_key(folder: Path) -> tuple[int, ...]:
    """``kubernetes@v1.37.2`` -> (1, 37, 2); unparsable names sort first."""
    try:
        return tuple(int(p) for p in folder.name.split("@v", 1)[1].split("."))
    except (IndexError, ValueError):
        return ()


def pause_sources(gomodcache: Path, debian_src: Path) -> list[Path]:
    """Where pause.c may be, best first: the Kubernetes modules in the Go
    module cache, newest release first, then Debian's unpacked sources."""
    modules = sorted(
        gomodcache.glob(f"k8s.io/kubernetes@v*/{PAUSE_C}"),
        key=lambda p: _release_key(p.parents[3]),
        reverse=True,
    )
    debian = sorted(debian_src.glob(DEFAULT_K8S_SRC_GLOB)) if debian_src.is_dir() else []
    return modules + debian


def _makefile_tag(makefile: Path) -> str:
    try:
        for line in makefile.read_text().splitlines():
            if line.startswith("TAG ") or line.startswith("TAG="):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


# -- the API for commands and apply ----------------------------------------


def build_images(
    names: Sequence[str] | None = None,
    *,
    site: Site | None = None,
    registry: str = DEFAULT_REGISTRY,
    refs: Mapping[str, str] | None = None,
    cache: Path | None = None,
    kubernetes_src: Path | None = None,
    refresh_base: bool = False,
    progress: Progress = _quiet,
    detail: Progress = _quiet,
) -> list[ImageArchive]:
    """Build (or reuse) the archives of ``names`` (every catalogue image by default)."""
    specs = _select(names)
    all_refs = image_refs(site, registry, refs)
    builder = Builder(cache, kubernetes_src, progress, detail)
    return builder.build(specs, all_refs, refresh_base)


def list_images(
    site: Site | None = None,
    *,
    registry: str = DEFAULT_REGISTRY,
    refs: Mapping[str, str] | None = None,
    cache: Path | None = None,
) -> list[ImageStatus]:
    """Every catalogue image with its cached archive (from the cache's records)."""
    builder = Builder(cache)
    all_refs = image_refs(site, registry, refs)
    out = []
    for spec in CATALOGUE:
        meta = builder.meta(spec.name)
        archive = None
        stale = False
        if meta is not None:
            if meta["ref"] == all_refs[spec.name]:
                archive = _archive_from_meta(spec.name, meta, builder.archives / f"{spec.name}.tar")
            else:
                stale = True
        out.append(ImageStatus(spec, all_refs[spec.name], archive, stale))
    return out


def image_archives(
    site: Site | None = None,
    *,
    site_dir: Path | None = None,
    names: Sequence[str] | None = None,
    registry: str = DEFAULT_REGISTRY,
    refs: Mapping[str, str] | None = None,
    cache: Path | None = None,
) -> list[ImageArchive]:
    """The archives apply imports on every node: the site's own archives
    (``images:`` entries with ``archive``; relative to ``site_dir``), then the
    catalogue's built archives for every reference the site does not provide.
    Raises when a needed catalogue image was not built."""
    out: list[ImageArchive] = []
    provided: set[str] = set()
    for image in site.images if site is not None else []:
        if image.archive is None:
            continue
        path = Path(image.archive)
        if not path.is_absolute() and site_dir is not None:
            path = site_dir / path
        info = read_archive(path)
        if info.ref and info.ref != image.name:
            raise InputError(f"{path}: the archive names {info.ref}, the site file {image.name}")
        out.append(
            ImageArchive(
                image.name,
                image.name,
                path,
                info.manifest_digest or info.config_digest,
                info.config_digest,
                path.stat().st_size,
            )
        )
        provided.add(image.name)
    wanted = set(names) if names else None
    missing = []
    for status in list_images(site, registry=registry, refs=refs, cache=cache):
        if status.ref in provided or (wanted is not None and status.spec.name not in wanted):
            continue
        if status.archive is None or not status.archive.path.exists():
            missing.append(status.spec.name)
        else:
            out.append(status.archive)
    if missing:
        raise OperationError(
            f"image archives not built: {', '.join(missing)}; run "
            f"`kubeprem images build --only {' '.join(missing)}` (or name mirrored "
            "archives under images: in the site file)"
        )
    return out

"""Artifacts built from Go modules pinned in this package.

Called by ``kubeprem.artifacts.cache.ensure_artifacts`` for sites with
``artifacts.source: go-modules``. Every component is one build module under
``modules/<component>-<version>/``: a ``go.mod`` that requires the upstream
module at its release tag (with ``tool`` lines naming the commands, so the
requirements stay complete) and a ``go.sum`` that checks every module the
build reads. Kubernetes pins its staging modules (k8s.io/api, ...) at v0.0.0
with replace directives to its own tree, which ``go install mod@version``
refuses; its build module replaces each with the published v0.X.Y of the
same release instead.

The build runs ``go build -trimpath -ldflags '-s -w ...'`` with
``-mod=readonly`` (a module missing from go.sum fails the build instead of
being fetched unchecked) and ``GOTOOLCHAIN=local``. Modules come from
``GOPROXY`` as the environment sets it: an air-gapped site points it at its
own module proxy. The module and build caches live under
``<cache>/go/``, so a rebuild after a partial run only links.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from kubeprem.artifacts.cache import (
    Component,
    Progress,
    install_file,
    mirror_components,
    specs_of,
)
from kubeprem.artifacts.manifest import Entry
from kubeprem.artifacts.process import elapsed, last_lines, run_logged
from kubeprem.errors import InputError, OperationError, PrerequisiteError

HEARTBEAT_S = 30.0
MODULES = "modules"


@dataclass(frozen=True)
class GoBuild:
    """One pinned build module and the commands it builds, for one component."""

    component: Component
    module: str  # the upstream module, for messages and the manifest
    packages: Mapping[str, str]  # artifact name -> Go package of its command
    # -X settings of the upstream release build (each release stamps its own version)
    stamps: tuple[str, ...] = ()
    cgo: bool = False
    tags: tuple[str, ...] = ()
    # extra linker flags (runc: a static binary, since it runs on every node)
    extldflags: str = ""

    @property
    def version(self) -> str:
        return self.component.version

    @property
    def folder(self) -> str:
        return f"{self.component.name}-{self.version}"

    def ldflags(self) -> str:
        parts = ["-s", "-w", *(f"-X {s}" for s in self.stamps)]
        if self.extldflags:
            parts.append(f"-extldflags '{self.extldflags}'")
        return " ".join(parts)

    def argv(self, out_dir: Path, go: str = "go") -> list[str]:
        """One ``go build`` for all of the module's commands: they share the work."""
        args = [go, "build", "-trimpath", "-ldflags", self.ldflags()]
        if self.tags:
            args += ["-tags", ",".join(self.tags)]
        return [*args, "-o", f"{out_dir}/", *dict.fromkeys(self.packages.values())]


def _kubernetes(c: Component) -> GoBuild:
    major, minor, _ = c.version.split(".")
    stamps = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        stamps += [
            f"{pkg}.gitVersion=v{c.version}",
            f"{pkg}.gitMajor={major}",
            f"{pkg}.gitMinor={minor}",
            f"{pkg}.gitTreeState=clean",
        ]
    return GoBuild(
        c,
        "k8s.io/kubernetes",
        {b: f"k8s.io/kubernetes/cmd/{b}" for b in c.artifacts},
        stamps=tuple(stamps),
    )


ETCD_PACKAGES = {
    "etcd": "go.etcd.io/etcd/server/v3",
    "etcdctl": "go.etcd.io/etcd/etcdctl/v3",
    "etcdutl": "go.etcd.io/etcd/etcdutl/v3",
}


def _etcd(c: Component) -> GoBuild:
    # etcd's version is a constant of go.etcd.io/etcd/api/v3/version: nothing to stamp
    return GoBuild(c, "go.etcd.io/etcd", {b: ETCD_PACKAGES[b] for b in c.artifacts})


def _containerd(c: Component) -> GoBuild:
    mod = "github.com/containerd/containerd/v2"
    return GoBuild(
        c,
        mod,
        {b: f"{mod}/cmd/{b}" for b in c.artifacts},
        stamps=(f"{mod}/version.Version=v{c.version}",),
    )


def _runc(c: Component) -> GoBuild:
    # upstream's default tags less libpathrs (a Rust library Debian 12 lacks);
    # seccomp needs cgo and libseccomp-dev, linked statically into the one file
    mod = "github.com/opencontainers/runc"
    return GoBuild(
        c,
        mod,
        {b: mod for b in c.artifacts},
        cgo=True,
        tags=("seccomp", "urfave_cli_no_docs"),
        extldflags="-static",
    )


CNI_PACKAGES = {
    "bridge": "plugins/main/bridge",
    "host-local": "plugins/ipam/host-local",
    "loopback": "plugins/main/loopback",
    "portmap": "plugins/meta/portmap",
}


def _cni(c: Component) -> GoBuild:
    mod = "github.com/containernetworking/plugins"
    return GoBuild(
        c,
        mod,
        {p: f"{mod}/{CNI_PACKAGES[p]}" for p in c.artifacts},
        stamps=(f"{mod}/pkg/utils/buildversion.BuildVersion=v{c.version}",),
    )


def _coredns(c: Component) -> GoBuild:
    # CoreDNS's version is a constant (coremain.CoreVersion); upstream stamps
    # only the git commit, which a module build does not have
    return GoBuild(
        c, "github.com/coredns/coredns", {b: "github.com/coredns/coredns" for b in c.artifacts}
    )


BUILDERS = {
    "kubernetes": _kubernetes,
    "etcd": _etcd,
    "containerd": _containerd,
    "runc": _runc,
    "cni-plugins": _cni,
    "coredns": _coredns,
}


def exe_name(package: str) -> str:
    """The file ``go build -o DIR/`` writes for ``package``: its last path
    element, or the one before a major-version suffix (``.../server/v3`` ->
    ``server``)."""
    parts = package.split("/")
    if len(parts) > 1 and re.fullmatch(r"v[2-9]\d*", parts[-1]):
        return parts[-2]
    return parts[-1]


def builds_for(version: str) -> tuple[GoBuild, ...]:
    """The build modules for Kubernetes ``version`` (``1.37.2``): one per
    component of its set, at the versions its row of the version table names."""
    return tuple(BUILDERS[c.name](c) for c in mirror_components(version))


def pinned_folders() -> list[str]:
    """The build modules this package holds: ``kubernetes-1.37.2``, ..."""
    root = resources.files("kubeprem.artifacts") / MODULES
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "go.mod").is_file())


def pinned_kubernetes() -> list[str]:
    return [f.removeprefix("kubernetes-") for f in pinned_folders() if f.startswith("kubernetes-")]


def check_version(version: str) -> None:
    """Refuse, before anything is built, a release no build module pins."""
    builds = builds_for(version)
    have = set(pinned_folders())
    missing = [b.folder for b in builds if b.folder not in have]
    if missing:
        raise InputError(
            f"artifacts.source is go-modules, but kubeprem pins no Go build module for "
            f"{', '.join(missing)}; Kubernetes releases pinned: "
            f"{', '.join(pinned_kubernetes()) or 'none'} (or use artifacts.source: mirror)"
        )


def module_files(folder: str) -> dict[str, bytes]:
    """go.mod and go.sum of one build module."""
    root = resources.files("kubeprem.artifacts") / MODULES / folder
    return {name: (root / name).read_bytes() for name in ("go.mod", "go.sum")}


GO_LINE = re.compile(r"^go (\d+)\.(\d+)(?:\.(\d+))?\s*$", re.M)


def go_requirement(go_mod: str) -> tuple[int, int, int] | None:
    m = GO_LINE.search(go_mod)
    return None if m is None else (int(m[1]), int(m[2]), int(m[3] or 0))


def parse_go_version(text: str) -> tuple[int, int, int] | None:
    """``go version go1.26.8 linux/amd64`` -> (1, 26, 8)."""
    m = re.search(r"\bgo(\d+)\.(\d+)(?:\.(\d+))?", text)
    return None if m is None else (int(m[1]), int(m[2]), int(m[3] or 0))


def build_env(cache_dir: Path, build: GoBuild, base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update(
        {
            "GOFLAGS": "-mod=readonly -buildvcs=false",
            "GOTOOLCHAIN": "local",
            "GOMODCACHE": str(cache_dir / "go" / "mod"),
            "GOCACHE": str(cache_dir / "go" / "build"),
            "GOPATH": str(cache_dir / "go" / "path"),
            "CGO_ENABLED": "1" if build.cgo else "0",
            "GOOS": "linux",
            "GOARCH": "amd64",
        }
    )
    return env


GO_CANDIDATES = ("go", "/usr/local/go/bin/go")


def _go_version(go: str) -> tuple[int, int, int] | None:
    try:
        res = subprocess.run([go, "version"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return parse_go_version(res.stdout) if res.returncode == 0 else None


def find_go(need: tuple[int, int, int]) -> str:
    """The first Go toolchain, on PATH then in /usr/local/go, at least ``need``
    (Debian's golang-go is 1.19, too old for current releases)."""
    seen: list[str] = []
    for name in GO_CANDIDATES:
        path = shutil.which(name)
        if path is None:
            continue
        have = _go_version(path)
        if have is not None and have >= need:
            return path
        seen.append(f"{path} ({'.'.join(map(str, have)) if have else 'unusable'})")
    raise PrerequisiteError(
        f"Go {'.'.join(map(str, need))} or later is needed to build the artifacts; found "
        f"{', '.join(seen) or 'no go'} (GOTOOLCHAIN=local: kubeprem fetches no toolchain)"
    )


def run_build(
    build: GoBuild, go: str, cache_dir: Path, out_dir: Path, log: Path, progress: Progress
) -> None:
    """Build ``build``'s commands into ``out_dir``, with a heartbeat."""
    work = Path(tempfile.mkdtemp(prefix=f"{build.folder}-", dir=cache_dir / "go"))
    try:
        for name, data in module_files(build.folder).items():
            (work / name).write_bytes(data)
        argv = build.argv(out_dir, go)
        env = build_env(cache_dir, build, os.environ)
        start = time.monotonic()
        status = run_logged(
            argv,
            cwd=work,
            env=env,
            log=log,
            beat=lambda: progress(f"still building {build.folder}, {elapsed(start)}"),
            every=HEARTBEAT_S,
        )
        if status != 0:
            raise OperationError(
                f"building {build.folder} ({build.module}) exited with status "
                f"{status}; end of {log}: {last_lines(log, 5)}"
            )
        progress(f"built {build.folder} in {elapsed(start)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def toolchain(builds: Sequence[GoBuild]) -> str:
    """The Go toolchain that can build every one of ``builds`` (their go.mod ``go`` lines)."""
    needs = [go_requirement(module_files(b.folder)["go.mod"].decode()) for b in builds]
    return find_go(max((n for n in needs if n is not None), default=(1, 0, 0)))


def _log_dir(cache_dir: Path) -> Path:
    logs = cache_dir / "go" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs


def image_build(name: Literal["coredns"], version: str) -> GoBuild:
    """The build of a command that goes into a container image rather than
    onto the machines (CoreDNS; kubeprem.images.builder, source ``go``)."""
    build = BUILDERS[name](Component(name, version, (name,)))
    if build.folder not in pinned_folders():
        raise InputError(
            f"kubeprem pins no Go build module {build.folder}; pinned: {', '.join(pinned_folders())}"
        )
    return build


def build_key(build: GoBuild, go: str) -> dict[str, str]:
    """What decides the bytes ``build`` produces: its go.mod and go.sum, the
    flags and the toolchain's version (for the image cache's key)."""
    files = module_files(build.folder)
    have = _go_version(go)
    return {
        **{name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        "ldflags": build.ldflags(),
        "tags": ",".join(build.tags),
        "cgo": str(build.cgo),
        "go": ".".join(map(str, have)) if have else go,
    }


def build_commands(
    build: GoBuild, go: str, cache_dir: Path, out_dir: Path, progress: Progress
) -> dict[str, Path]:
    """Build ``build``'s commands into ``out_dir`` (caches under
    ``<cache_dir>/go``); artifact name -> the built file."""
    (cache_dir / "go").mkdir(parents=True, exist_ok=True)
    log = _log_dir(cache_dir) / f"{build.folder}.log"
    progress(f"building {build.folder}: {', '.join(build.packages)}")
    run_build(build, go, cache_dir, out_dir, log, progress)
    out: dict[str, Path] = {}
    for name, package in build.packages.items():
        built = out_dir / exe_name(package)
        if not built.is_file():
            raise OperationError(f"building {build.folder}: go build wrote no {built}")
        out[name] = built
    return out


def gather_all(
    version: str, cache_dir: Path, staging: Path, progress: Progress
) -> dict[str, Entry]:
    """Build every artifact of ``version`` and copy it into ``staging``."""
    check_version(version)
    builds = builds_for(version)
    go = toolchain(builds)
    (cache_dir / "go").mkdir(parents=True, exist_ok=True)
    entries: dict[str, Entry] = {}
    out_root = Path(tempfile.mkdtemp(prefix="out-", dir=cache_dir / "go"))
    try:
        for b in builds:
            out_dir = out_root / b.folder
            out_dir.mkdir()
            # go build names the etcd server after its package: "server"
            built = build_commands(b, go, cache_dir, out_dir, progress)
            for spec in specs_of((b.component,)):
                package = b.packages[spec.name]
                source = f"built from Go module {b.module}@v{b.version} ({package})"
                entries[spec.name] = install_file(staging, spec, built[spec.name], source)
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    progress(f"built {len(entries)} files into the cache")
    return entries


def listing_origin(version: str) -> dict[str, str]:
    """Artifact name -> where it is built from, for ``artifacts --list``."""
    out: dict[str, str] = {}
    for b in builds_for(version):
        for name, package in b.packages.items():
            out[name] = f"Go module {b.module}@v{b.version}: {package} ({b.folder}/go.sum)"
    return out

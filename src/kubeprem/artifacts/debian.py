"""Artifacts from Debian: Kubernetes built from its source package, the rest
from Debian's binary packages. The lab's and CI's source, since nothing else
is reachable there.

Called by ``kubeprem.artifacts.cache.ensure_artifacts``. Steps:

1. the source tree ``<cache>/src/kubernetes-1.20.5+really1.20.2/``: reused
   when present, else fetched with ``apt-get source kubernetes`` (a bookworm
   ``deb-src`` entry is added beside the existing ``deb`` entry if missing);
2. ``make WHAT=cmd/... KUBE_BUILD_PLATFORMS=linux/amd64`` offline (vendored,
   ``GOFLAGS=-mod=vendor GOPROXY=off``) for binaries missing from
   ``_output/bin``; a build already running in the tree is waited for, never
   duplicated; each binary must report ``v1.20.2``;
3. etcd, etcdctl, containerd, containerd-shim-runc-v2, ctr, runc and the CNI
   plugins: the files Debian's installed packages ship (``dpkg -L``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubeprem.artifacts.cache import (
    KUBERNETES_BINARIES,
    ArtifactSpec,
    Kind,
    Progress,
    install_file,
)
from kubeprem.artifacts.manifest import Entry
from kubeprem.artifacts.process import elapsed, last_lines, run_logged
from kubeprem.errors import InputError, OperationError, PrerequisiteError

SOURCE_PACKAGE = "kubernetes"
SOURCE_UPSTREAM = "1.20.5+really1.20.2"
KUBERNETES_VERSION = "1.20.2"
SUITE = "bookworm"
SOURCES_DIR = Path("/etc/apt/sources.list.d")
DEB_SRC_FILE = SOURCES_DIR / "kubeprem-src.sources"
HEARTBEAT_S = 20.0

BUILD_ENV = {"GOFLAGS": "-mod=vendor", "GOPROXY": "off", "GO111MODULE": "on"}

# artifact -> (Debian package, folder the file is expected in)
DEBIAN_BINARIES: dict[str, tuple[str, str]] = {
    "etcd": ("etcd-server", "/usr/bin"),
    "etcdctl": ("etcd-client", "/usr/bin"),
    "containerd": ("containerd", "/usr/bin"),
    "containerd-shim-runc-v2": ("containerd", "/usr/bin"),
    "ctr": ("containerd", "/usr/bin"),
    "runc": ("runc", "/usr/sbin"),
    "bridge": ("containernetworking-plugins", "/usr/lib/cni"),
    "host-local": ("containernetworking-plugins", "/usr/lib/cni"),
    "loopback": ("containernetworking-plugins", "/usr/lib/cni"),
    "portmap": ("containernetworking-plugins", "/usr/lib/cni"),
}
COMPONENT_OF_PACKAGE = {
    "etcd-server": "etcd",
    "etcd-client": "etcd",
    "containerd": "containerd",
    "runc": "runc",
    "containernetworking-plugins": "cni-plugins",
}


def check_version(version: str) -> None:
    if version != KUBERNETES_VERSION:
        raise InputError(
            f"cluster.kubernetes_version is {version}, but Debian's source package "
            f"'{SOURCE_PACKAGE}' ({SUITE}) provides {KUBERNETES_VERSION} only: use "
            f"artifacts.source: mirror with artifacts.mirror pointing at a mirror of the "
            f"{version} release files (kubeprem artifacts SITE --list shows them), "
            f'or set kubernetes_version: "{KUBERNETES_VERSION}"'
        )


def source_tree(cache_dir: Path) -> Path:
    return cache_dir / "src" / f"{SOURCE_PACKAGE}-{SOURCE_UPSTREAM}"


def installed_version(package: str) -> str | None:
    """The installed version of a Debian package, or None."""
    try:
        res = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}\t${Version}", package],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        return None
    status, _, version = res.stdout.partition("\t")
    return version if res.returncode == 0 and status.endswith(" installed") else None


def debian_upstream(version: str) -> str:
    """``2:1.6.20~ds1-1+deb12u3`` -> ``1.6.20``; ``1.20.5+really1.20.2-1`` -> ``1.20.2``."""
    v = version.split(":", 1)[-1]
    if "-" in v:
        v = v.rsplit("-", 1)[0]
    if "+really" in v:
        v = v.split("+really", 1)[1]
    return re.split(r"[~+]", v, maxsplit=1)[0]


def changelog_version(text: str) -> str | None:
    """The version on the first line of debian/changelog."""
    m = re.match(r"\S+ \(([^)]+)\)", text)
    return m.group(1) if m else None


# -- apt sources ---------------------------------------------------------------------


def deb822_stanzas(text: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    key = ""
    for raw in [*text.splitlines(), ""]:
        line = raw.rstrip()
        if not line.strip():
            if cur:
                out.append(cur)
            cur, key = {}, ""
        elif line.startswith("#"):
            continue
        elif line[0] in " \t" and key:
            cur[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            cur[key.strip()] = value.strip()
    return out


def has_deb_src(files: Mapping[str, str], suite: str) -> bool:
    """Whether any apt source file has a ``deb-src`` entry for ``suite``."""
    for name, text in files.items():
        if name.endswith(".sources"):
            for st in deb822_stanzas(text):
                if (
                    "deb-src" in st.get("Types", "").split()
                    and suite in st.get("Suites", "").split()
                    and st.get("Enabled", "yes").lower() != "no"
                ):
                    return True
        elif name.endswith(".list"):
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                if words[:1] == ["deb-src"] and suite in words:
                    return True
    return False


def deb_src_entry(files: Mapping[str, str], suite: str) -> str | None:
    """A deb822 ``deb-src`` stanza with the mirror and key of the existing
    ``deb`` entry for ``suite``, or None when there is none to mirror."""
    for name, text in sorted(files.items()):
        if not name.endswith(".sources"):
            continue
        for st in deb822_stanzas(text):
            if "deb" in st.get("Types", "").split() and suite in st.get("Suites", "").split():
                lines = ["Types: deb-src", f"URIs: {st['URIs']}", f"Suites: {suite}"]
                lines.append(f"Components: {st.get('Components', 'main')}")
                if "Signed-By" in st:
                    lines.append(f"Signed-By: {st['Signed-By']}")
                return "\n".join(lines) + "\n"
    for name, text in sorted(files.items()):
        if not name.endswith(".list"):
            continue
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if words[:1] == ["deb"] and suite in words:
                return " ".join(["deb-src", *words[1:]]) + "\n"
    return None


def _apt_source_files() -> dict[str, str]:
    files: dict[str, str] = {}
    main = Path("/etc/apt/sources.list")
    if main.is_file():
        files[str(main)] = main.read_text(encoding="utf-8", errors="replace")
    if SOURCES_DIR.is_dir():
        for p in sorted(SOURCES_DIR.iterdir()):
            if p.suffix in (".sources", ".list") and p.is_file():
                files[str(p)] = p.read_text(encoding="utf-8", errors="replace")
    return files


# -- commands ------------------------------------------------------------------------


def _run(argv: list[str], step: str, cwd: Path | None = None) -> str:
    try:
        res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise PrerequisiteError(f"{step}: {argv[0]} not found") from exc
    if res.returncode != 0:
        tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-5:])
        raise OperationError(
            f"{step}: `{' '.join(argv)}` exited with status {res.returncode}: {tail}"
        )
    return res.stdout


def fetch_source(cache_dir: Path, progress: Progress) -> Path:
    """The unpacked source tree, fetched with apt-get source when absent."""
    tree = source_tree(cache_dir)
    if (tree / "Makefile").is_file() and (tree / "vendor").is_dir():
        return tree
    if os.geteuid() != 0:
        raise PrerequisiteError(
            f"the Kubernetes source is not in {tree}; fetching it needs root (apt-get)"
        )
    files = _apt_source_files()
    if not has_deb_src(files, SUITE):
        entry = deb_src_entry(files, SUITE)
        if entry is None:
            raise PrerequisiteError(f"no apt 'deb' entry for {SUITE} to add a 'deb-src' beside")
        progress(f"adding {DEB_SRC_FILE} (deb-src for {SUITE})")
        DEB_SRC_FILE.write_text(entry, encoding="utf-8")
    progress("apt-get update")
    _run(["apt-get", "update", "-q"], "apt-get update")
    tree.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-source-", dir=tree.parent))
    try:
        progress(f"apt-get source {SOURCE_PACKAGE} into {tree.parent}")
        _run(["apt-get", "source", "-q", SOURCE_PACKAGE], "apt-get source", cwd=tmp)
        unpacked = tmp / tree.name
        if not (unpacked / "Makefile").is_file():
            raise OperationError(
                f"apt-get source {SOURCE_PACKAGE} did not unpack {tree.name}: "
                f"found {sorted(p.name for p in tmp.iterdir())}"
            )
        for p in tmp.iterdir():
            if p != unpacked:
                p.replace(tree.parent / p.name)
        unpacked.rename(tree)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tree


def builds_running(tree: Path) -> list[int]:
    """PIDs of ``make`` processes working in ``tree`` (a build started by
    hand or by another run), read from /proc."""
    pids: list[int] = []
    real = tree.resolve()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if (d / "comm").read_text().strip() != "make":
                continue
            cwd = (d / "cwd").resolve()
        except OSError:
            continue
        if cwd == real or real in cwd.parents:
            pids.append(int(d.name))
    return pids


def binary_version_ok(path: Path, version: str) -> bool:
    argv = (
        [str(path), "version", "--client"] if path.name == "kubectl" else [str(path), "--version"]
    )
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0 and f"v{version}" in res.stdout + res.stderr


def _stdout_file(pid: int) -> Path | None:
    """The regular file a process writes its output to (its build log), if any."""
    try:
        target = Path(os.readlink(f"/proc/{pid}/fd/1"))
    except OSError:
        return None
    return target if target.is_absolute() and target.is_file() else None


def wait_for_running(tree: Path, progress: Progress) -> None:
    start = time.monotonic()
    last = 0.0
    while pids := builds_running(tree):
        if time.monotonic() - last >= HEARTBEAT_S:
            logs = [p for p in map(_stdout_file, pids) if p is not None]
            tail = f": {last_lines(logs[0])}" if logs else ""
            progress(
                f"a build is already running in {tree} (pid {', '.join(map(str, pids))}); "
                f"waiting for it, {elapsed(start)}{tail}"
            )
            last = time.monotonic()
        time.sleep(2)


def build(tree: Path, binaries: list[str], log: Path, progress: Progress) -> None:
    """``make WHAT=...`` for ``binaries``, with a heartbeat and the output in ``log``."""
    if shutil.which("go") is None:
        raise PrerequisiteError("go not found: apt-get install golang-go (Go 1.19 builds 1.20.2)")
    if shutil.which("rsync") is None:
        raise PrerequisiteError(
            "rsync not found (the Kubernetes build needs it): apt-get install rsync"
        )
    what = " ".join(f"cmd/{b}" for b in binaries)
    argv = ["make", f"WHAT={what}", "KUBE_BUILD_PLATFORMS=linux/amd64"]
    env = {**os.environ, **BUILD_ENV}
    progress(f"building {', '.join(binaries)} in {tree} (10 to 13 minutes on 2 cores); log: {log}")
    start = time.monotonic()
    started = time.time()

    def beat() -> None:
        done = _built_since(tree / "_output" / "bin", binaries, started)
        progress(
            f"still building, {elapsed(start)}, {len(done)}/{len(binaries)} done"
            f"{' (' + ', '.join(done) + ')' if done else ''}: {last_lines(log)}"
        )

    status = run_logged(argv, cwd=tree, env=env, log=log, beat=beat, every=HEARTBEAT_S)
    if status != 0:
        raise OperationError(
            f"building Kubernetes: `{' '.join(argv)}` in {tree} exited with status "
            f"{status}; end of {log}: {last_lines(log, 5)}"
        )
    progress(f"built {', '.join(binaries)} in {elapsed(start)}")


def _built_since(out: Path, binaries: list[str], since: float) -> list[str]:
    """Which of ``binaries`` the running build has written (go links the
    binaries of one ``make`` near its end, so this moves in steps)."""
    done = []
    for b in binaries:
        try:
            if (out / b).stat().st_mtime >= since:
                done.append(b)
        except OSError:
            pass
    return done


def kubernetes_binaries(cache_dir: Path, progress: Progress) -> tuple[Path, str]:
    """The folder holding the built binaries, and the source package version."""
    tree = fetch_source(cache_dir, progress)
    out = tree / "_output" / "bin"
    if builds_running(tree):
        wait_for_running(tree, progress)
    missing = [b for b in KUBERNETES_BINARIES if not binary_version_ok(out / b, KUBERNETES_VERSION)]
    if missing:
        build(tree, missing, tree.parent / f"build-{KUBERNETES_VERSION}.log", progress)
        bad = [b for b in missing if not binary_version_ok(out / b, KUBERNETES_VERSION)]
        if bad:
            raise OperationError(
                f"after the build, {', '.join(bad)} in {out} missing or not v{KUBERNETES_VERSION}"
            )
    else:
        progress(f"reusing the Kubernetes build in {out}")
    changelog = (tree / "debian" / "changelog").read_text(encoding="utf-8", errors="replace")
    return out, changelog_version(changelog) or SOURCE_UPSTREAM


# -- Debian's binary packages ------------------------------------------------------------


@dataclass(frozen=True)
class DebianFile:
    name: str
    package: str
    package_version: str
    path: Path


def find_in_listing(listing: str, name: str, folder: str) -> str | None:
    """The path of ``name`` in ``dpkg -L`` output, preferring ``folder``."""
    paths = [ln.strip() for ln in listing.splitlines() if ln.strip().endswith("/" + name)]
    for p in paths:
        if p.rsplit("/", 1)[0] == folder:
            return p
    return paths[0] if paths else None


def debian_files() -> list[DebianFile]:
    packages = sorted(set(pkg for pkg, _ in DEBIAN_BINARIES.values()))
    versions: dict[str, str] = {}
    missing: list[str] = []
    for pkg in packages:
        version = installed_version(pkg)
        if version is None:
            missing.append(pkg)
        else:
            versions[pkg] = version
    if missing:
        raise PrerequisiteError(
            f"Debian packages missing for the artifacts: {' '.join(missing)} "
            f"(apt-get install {' '.join(missing)})"
        )
    listings = {pkg: _run(["dpkg", "-L", pkg], f"dpkg -L {pkg}") for pkg in packages}
    out: list[DebianFile] = []
    for name, (pkg, folder) in DEBIAN_BINARIES.items():
        found = find_in_listing(listings[pkg], name, folder)
        if found is None or not Path(found).is_file():
            raise PrerequisiteError(f"Debian package {pkg} has no {name} (dpkg -L {pkg})")
        out.append(DebianFile(name, pkg, versions[pkg], Path(found).resolve()))
    return out


def gather_all(
    version: str, cache_dir: Path, staging: Path, progress: Progress
) -> dict[str, Entry]:
    """Every artifact into ``staging``: the Kubernetes build and Debian's files."""
    check_version(version)
    deb = debian_files()  # fail early, before a long build, when a package is missing
    out_dir, src_version = kubernetes_binaries(cache_dir, progress)
    entries: dict[str, Entry] = {}
    for b in KUBERNETES_BINARIES:
        spec = ArtifactSpec(b, "kubernetes", version, "binary")
        source = f"debian source {SOURCE_PACKAGE} {src_version}, built"
        entries[b] = install_file(staging, spec, out_dir / b, source)
    for f in deb:
        kind: Kind = "cni" if DEBIAN_BINARIES[f.name][1] == "/usr/lib/cni" else "binary"
        spec = ArtifactSpec(
            f.name, COMPONENT_OF_PACKAGE[f.package], debian_upstream(f.package_version), kind
        )
        source = f"debian package {f.package} {f.package_version}: {f.path}"
        entries[f.name] = install_file(staging, spec, f.path, source)
    progress(f"copied {len(entries)} files into the cache")
    return entries

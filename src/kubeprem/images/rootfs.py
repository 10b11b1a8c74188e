"""Root filesystems for image layers: a cached debootstrap base, package
installs in a chroot over a copy of it, and the difference as layer entries.

Called by ``kubeprem.images.builder`` only. Runs real programs (debootstrap,
chroot, apt-get, mount) as root on the build machine; every failure becomes a
``RemoteError`` naming the step, the command and the end of its output.

The layer filter (``EXCLUDE``/``KEEP``) is applied the same way to the base
and to every image, so a path is either in the base layer or decided by the
image layer, never half of each. Files are compared by type, mode, owner,
size and content (size and mtime equal count as equal: ``cp -a`` keeps
mtimes, and dpkg gives every file it writes its package's mtime).
"""

from __future__ import annotations

import filecmp
import fnmatch
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from kubeprem.errors import PrerequisiteError, RemoteError
from kubeprem.images.archive import Entry

Progress = Callable[[str], None]

# paths never put in a layer (relative, fnmatch: "*" also matches "/")
EXCLUDE: tuple[str, ...] = (
    "dev/*",
    "proc/*",
    "sys/*",
    "run/*",
    "tmp/*",
    "var/tmp/*",
    "var/log/*",
    "var/lib/apt/lists/*",
    "var/cache/apt/*",
    "var/cache/debconf/*-old",
    "var/cache/ldconfig/aux-cache",
    "var/lib/dpkg/*-old",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/lintian/*",
    "usr/share/bug/*",
    "*/__pycache__",
    "*/__pycache__/*",
    "etc/resolv.conf",
    "etc/hostname",
    "usr/sbin/policy-rc.d",
)
# ... except these (licences stay with the software)
KEEP: tuple[str, ...] = ("usr/share/doc/*/copyright",)

# keeps later installs from writing what the layers drop anyway
DPKG_EXCLUDES = """\
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
"""
# no daemon may start while packages install in the chroot
POLICY_RC_D = "#!/bin/sh\nexit 101\n"
CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C",
    "HOME": "/root",
}


def excluded(rel: str) -> bool:
    if any(fnmatch.fnmatchcase(rel, p) for p in KEEP):
        return False
    return any(fnmatch.fnmatchcase(rel, p) for p in EXCLUDE)


def run(
    step: str,
    argv: Sequence[str],
    progress: Progress | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run ``argv``; stream its output lines to ``progress``; return the output."""
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(env) if env is not None else None,
        )
    except OSError as exc:
        raise PrerequisiteError(f"{step}: cannot run {argv[0]}: {exc}") from exc
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if progress is not None:
            progress(line.rstrip())
    status = proc.wait()
    out = "".join(lines)
    if status != 0:
        raise RemoteError("localhost", step, argv, status, out)
    return out


def host_sources(paths: Sequence[Path] = (Path("/etc/apt/sources.list.d"),)) -> str:
    """This host's binary apt sources (deb822 paragraphs with Types: deb) for
    the chroot, so images use the mirror and suites the host uses."""
    paragraphs: list[str] = []
    for folder in paths:
        for f in sorted(folder.glob("*.sources")) if folder.is_dir() else []:
            for para in f.read_text(encoding="utf-8").split("\n\n"):
                fields = dict(
                    line.split(":", 1)
                    for line in para.splitlines()
                    if ":" in line and not line.startswith(("#", " "))
                )
                types = fields.get("Types", "").split()
                if "deb" not in types:
                    continue
                lines = [
                    "Types: deb" if line.startswith("Types:") else line
                    for line in para.strip().splitlines()
                    if not line.startswith("#")
                ]
                paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs) + ("\n" if paragraphs else "")


def first_mirror(sources: str, suite: str) -> str:
    uri = None
    for para in sources.split("\n\n"):
        fields = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in para.splitlines())}
        if suite in fields.get("Suites", "").split():
            uri = fields.get("URIs", "").split()[0]
            break
    if not uri:
        raise PrerequisiteError(
            f"no apt source for {suite} in /etc/apt/sources.list.d/*.sources; "
            f"add one (Types: deb, URIs: your Debian mirror, Suites: {suite})"
        )
    return uri


@contextmanager
def chroot_mounts(root: Path) -> Iterator[None]:
    """/proc mounted and the host's resolv.conf copied for the duration."""
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    run("mount /proc in the chroot", ["mount", "-t", "proc", "proc", str(root / "proc")])
    try:
        yield
    finally:
        if subprocess.run(["umount", str(root / "proc")], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(root / "proc")], check=False)


def chroot(root: Path, step: str, argv: Sequence[str], progress: Progress | None = None) -> str:
    return run(step, ["chroot", str(root), *argv], progress, CHROOT_ENV)


def debootstrap(target: Path, suite: str, sources: str, progress: Progress) -> None:
    """A minbase rootfs at ``target`` with the host's sources, updated and upgraded."""
    if shutil.which("debootstrap") is None:
        raise PrerequisiteError("debootstrap is not installed: apt-get install debootstrap")
    mirror = first_mirror(sources, suite)
    run(
        "debootstrap",
        ["debootstrap", "--variant=minbase", suite, str(target), mirror],
        progress,
    )
    (target / "etc/apt/sources.list").write_text("")
    (target / "etc/apt/sources.list.d/debian.sources").write_text(sources)
    (target / "etc/dpkg/dpkg.cfg.d/kubeprem-excludes").write_text(DPKG_EXCLUDES)
    policy = target / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    with chroot_mounts(target):
        chroot(target, "apt-get update", ["apt-get", "-q", "update"], progress)
        chroot(target, "apt-get upgrade", ["apt-get", "-q", "-y", "upgrade"], progress)
        chroot(target, "apt-get clean", ["apt-get", "clean"])


def simulate_install(root: Path, packages: Sequence[str]) -> list[str]:
    """What ``apt-get install`` would install, as sorted "package version" lines."""
    out = chroot(
        root,
        "apt-get install --simulate",
        ["apt-get", "-s", "-q", "install", "--no-install-recommends", *packages],
    )
    found = []
    for line in out.splitlines():
        if line.startswith("Inst "):
            parts = line.split()
            found.append(f"{parts[1]} {parts[2].strip('([')}")
    return sorted(found)


def install(
    root: Path,
    packages: Sequence[str],
    force_remove: Sequence[str],
    remove: Sequence[str],
    progress: Progress,
) -> None:
    with chroot_mounts(root):
        chroot(
            root,
            "apt-get install",
            ["apt-get", "-q", "-y", "install", "--no-install-recommends", *packages],
            progress,
        )
        if force_remove:
            chroot(
                root,
                "dpkg --purge --force-depends",
                ["dpkg", "--purge", "--force-depends", *force_remove],
                progress,
            )
        chroot(root, "apt-get clean", ["apt-get", "clean"])
    for path in remove:
        target = root / path.lstrip("/")
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def installed_packages(root: Path) -> dict[str, str]:
    out = chroot(root, "dpkg-query", ["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"])
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def resolve_user(root: Path, user: str) -> str:
    """``redis`` -> ``"101:102"`` from the image's /etc/passwd; numeric stays."""
    if not user or user[0].isdigit():
        return user
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return f"{fields[2]}:{fields[3]}"
    raise PrerequisiteError(f"user {user!r} does not exist in the image's /etc/passwd")


def _entry(path: Path, rel: str, st: os.stat_result) -> Entry | None:
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        return Entry(rel, "dir", mode, st.st_uid, st.st_gid)
    if stat.S_ISLNK(st.st_mode):
        return Entry(rel, "symlink", 0o777, st.st_uid, st.st_gid, target=os.readlink(path))
    if stat.S_ISREG(st.st_mode):
        inode = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
        return Entry(rel, "file", mode, st.st_uid, st.st_gid, source=path, inode=inode)
    return None  # devices, sockets, fifos: never in a layer


def _walk(root: Path, rel: str = "") -> Iterator[tuple[str, Path, os.stat_result]]:
    folder = root / rel if rel else root
    for name in sorted(os.listdir(folder)):
        sub = f"{rel}/{name}" if rel else name
        if excluded(sub):
            continue
        path = folder / name
        st = path.lstat()
        yield sub, path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(root, sub)


def tree_entries(root: Path) -> list[Entry]:
    """Every path of ``root`` that belongs in a layer."""
    return [e for rel, path, st in _walk(root) if (e := _entry(path, rel, st)) is not None]


def _same(a: Path, sa: os.stat_result, b: Path, sb: os.stat_result) -> bool:
    if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
        return False
    if (sa.st_mode, sa.st_uid, sa.st_gid) != (sb.st_mode, sb.st_uid, sb.st_gid):
        return False
    if stat.S_ISLNK(sa.st_mode):
        return os.readlink(a) == os.readlink(b)
    if stat.S_ISREG(sa.st_mode):
        if sa.st_size != sb.st_size:
            return False
        return sa.st_mtime_ns == sb.st_mtime_ns or filecmp.cmp(a, b, shallow=False)
    return True


def diff_entries(base: Path, image: Path) -> list[Entry]:
    """What ``image`` adds to, changes in or removes from ``base``."""
    out: list[Entry] = []
    for rel, path, st in _walk(image):
        lower = base / rel
        try:
            sl = lower.lstat()
        except FileNotFoundError:
            sl = None
        if sl is None or not _same(path, st, lower, sl):
            e = _entry(path, rel, st)
            if e is not None:
                out.append(e)
    gone: list[str] = []
    for rel, _path, _st in _walk(base):
        if any(rel.startswith(g + "/") for g in gone[-1:]):
            continue
        if not (image / rel).exists() and not (image / rel).is_symlink():
            gone.append(rel)
            out.append(Entry(rel, "whiteout"))
    return out

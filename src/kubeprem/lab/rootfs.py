"""The lab machines' root filesystem: built once with debootstrap, cached.

Called by ``kubeprem.lab.machines`` before the first machine boots. The
build goes into a temporary folder beside the cache and is renamed into
place only when complete, so a killed build never leaves a broken cache;
a lock keeps two builds from running at once. What is shared by every
machine lives here; what differs per machine (hostname, machine id, host
keys, address) is written into each machine's own copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kubeprem.errors import OperationError, PrerequisiteError
from kubeprem.lab.layout import (
    CGROUPS_SCRIPT,
    CGROUPS_UNIT,
    CGROUPS_UNIT_NAME,
    PACKAGES,
    SUITE,
    rootfs_dir,
)

DEFAULT_MIRROR = "http://deb.debian.org/debian"

# Units that make no sense in a lab machine: timers that would try to reach
# the internet, first-boot generators, and networkd (the lab's own unit
# sets eth0 up; networkd waits for udev forever here).
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "systemd-networkd.service",
    "systemd-networkd.socket",
    "systemd-networkd-wait-online.service",
    "ssh.socket",
    "getty@tty1.service",
    "systemd-pstore.service",
)


def mirror_from_sources(deb822: str, legacy: str = "", suite: str = SUITE) -> str | None:
    """The Debian mirror this host uses for ``suite``, from the text of
    /etc/apt/sources.list.d/debian.sources (deb822) or sources.list."""
    for stanza in re.split(r"\n\s*\n", deb822):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and suite in fields.get("suites", "").split():
            uris = fields.get("uris", "").split()
            if uris:
                return uris[0]
    for line in legacy.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 3 and parts[0] == "deb":
            rest = [p for p in parts[1:] if not p.startswith("[")]
            if len(rest) >= 2 and rest[1] == suite:
                return rest[0]
    return None


def host_mirror() -> str:
    def read(p: str) -> str:
        try:
            return Path(p).read_text(encoding="utf-8")
        except OSError:
            return ""

    deb822 = read("/etc/apt/sources.list.d/debian.sources")
    legacy = read("/etc/apt/sources.list")
    return mirror_from_sources(deb822, legacy) or DEFAULT_MIRROR


def debootstrap_argv(target: Path, mirror: str, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        SUITE,
        str(target),
        mirror,
    ]


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_rootfs(lab_root: Path, *, log: Path | None = None) -> tuple[Path, bool]:
    """The cached root filesystem, built if absent. Returns (path, built)."""
    final = rootfs_dir(lab_root)
    if (final / "etc" / "os-release").exists():
        return final, False
    if shutil.which("debootstrap") is None:
        raise PrerequisiteError(
            "debootstrap is not installed; it builds the lab machines' root filesystem "
            "(apt-get install debootstrap)"
        )
    with _locked(lab_root / ".rootfs.lock"):
        if (final / "etc" / "os-release").exists():
            return final, False
        # Leftovers of killed builds: never used, safe to delete.
        for old in lab_root.glob(".rootfs-build-*"):
            shutil.rmtree(old, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".rootfs-build-", dir=lab_root))
        target = tmp / "root"
        log_path = log or lab_root / "rootfs-build.log"
        argv = debootstrap_argv(target, host_mirror())
        with open(log_path, "w") as out:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            shutil.rmtree(tmp, ignore_errors=True)
            raise OperationError(
                f"building the lab root filesystem failed: `{' '.join(argv)}` exited with "
                f"status {proc.returncode}: {' | '.join(tail)} (full log: {log_path})"
            )
        prepare_shared(target)
        if final.exists():  # a broken earlier cache without os-release
            shutil.rmtree(final)
        os.rename(target, final)
        shutil.rmtree(tmp, ignore_errors=True)
    return final, True


def prepare_shared(root: Path) -> None:
    """Make a fresh debootstrap tree fit to be every machine's lower layer:
    nothing machine-specific stays in it, lab-only units are in."""
    etc = root / "etc"
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    # Empty machine-id in the image; each machine gets its own.
    (etc / "machine-id").write_text("")
    dbus_id = root / "var" / "lib" / "dbus" / "machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    dbus_id.parent.mkdir(parents=True, exist_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    (etc / "hostname").write_text("localhost\n")
    (etc / "resolv.conf").unlink(missing_ok=True)
    (etc / "resolv.conf").write_text("# kubeprem lab: no name server outside the lab\n")
    units = etc / "systemd" / "system"
    for name in MASKED_UNITS:
        for wants in units.glob(f"*.wants/{name}"):
            wants.unlink()
        link = units / name
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    script = root / "usr" / "local" / "sbin" / "kubeprem-lab-cgroups"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(CGROUPS_SCRIPT)
    script.chmod(0o755)
    (units / CGROUPS_UNIT_NAME).write_text(CGROUPS_UNIT)
    wants = units / "multi-user.target.wants"
    wants.mkdir(exist_ok=True)
    (wants / CGROUPS_UNIT_NAME).unlink(missing_ok=True)
    (wants / CGROUPS_UNIT_NAME).symlink_to(f"/etc/systemd/system/{CGROUPS_UNIT_NAME}")
    marker = etc / "kubeprem-lab"
    marker.mkdir(exist_ok=True)
    (marker / "README").write_text(
        "This machine is a kubeprem lab machine (systemd-nspawn); lab-only settings apply.\n"
    )
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()

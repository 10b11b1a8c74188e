"""The lab's acting side on this host: processes, mounts, links, firewall.

Called only by ``kubeprem.lab.machines``. Every function here either runs
a program (argument lists, never a shell) or reads /proc and /sys; the
parsers of what they read are pure and tested on captured text.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kubeprem.errors import OperationError

# -- running programs ------------------------------------------------------


def run(argv: list[str], *, step: str, input_text: str | None = None) -> str:
    """Run a program; its stdout, or OperationError naming step and stderr."""
    try:
        proc = subprocess.run(
            argv, input=input_text, capture_output=True, text=True, check=False, timeout=120
        )
    except FileNotFoundError as exc:
        raise OperationError(f"{step}: {argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise OperationError(f"{step}: `{' '.join(argv)}` timed out") from exc
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise OperationError(
            f"{step}: `{' '.join(argv)}` exited with status {proc.returncode}: {tail}"
        )
    return proc.stdout


# -- processes --------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    argv: tuple[str, ...]


def nspawn_machine_of(argv: tuple[str, ...]) -> str | None:
    """The ``--machine=`` of a systemd-nspawn command line, else None."""
    if not argv or not argv[0].endswith("systemd-nspawn"):
        return None
    for a in argv[1:]:
        if a.startswith("--machine="):
            return a.split("=", 1)[1]
    return None


def processes() -> list[Proc]:
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "cmdline").read_bytes()
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # comm may hold spaces or parentheses: the fields start after the last ')'
        fields = stat.rsplit(")", 1)[1].split()
        argv = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
        out.append(Proc(int(entry.name), int(fields[1]), argv))
    return out


def nspawn_processes(procs: Iterable[Proc]) -> dict[str, tuple[int, int | None]]:
    """machine name -> (systemd-nspawn pid, the machine's PID 1 or None)."""
    procs = list(procs)
    found: dict[str, tuple[int, int | None]] = {}
    for p in procs:
        name = nspawn_machine_of(p.argv)
        if name is None:
            continue
        children = [c.pid for c in procs if c.ppid == p.pid]
        found[name] = (p.pid, min(children) if children else None)
    return found


def kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)


def spawn_detached(
    argv: list[str], env: dict[str, str], log: Path, cgroups: list[Path] | None = None
) -> int:
    """Start a program in its own session (and cgroups), outliving kubeprem."""
    full_env = {**os.environ, **env}
    dirs = list(cgroups or [])
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
                close_fds=True,
                preexec_fn=(lambda: enter_cgroups(dirs)) if dirs else None,
            )
    except (OSError, subprocess.SubprocessError) as exc:
        raise OperationError(f"cannot start `{argv[0]}`: {exc}") from exc
    return proc.pid


def stop_machine(nspawn_pid: int, pid1: int | None, *, grace: float) -> None:
    """Power a machine off: ask systemd to (SIGRTMIN+4), then SIGKILL its
    PID 1 and the nspawn process. ``grace`` 0 is an abrupt power cut."""
    if pid1 is not None and grace > 0:
        kill(pid1, signal.SIGRTMIN + 4)
        if wait_gone(nspawn_pid, grace):
            return
    if pid1 is not None:
        kill(pid1, signal.SIGKILL)
        if wait_gone(nspawn_pid, 5):
            return
    kill(nspawn_pid, signal.SIGKILL)
    wait_gone(nspawn_pid, 5)


# -- mounts ----------------------------------------------------------------


def unescape_mount(path: str) -> str:
    """Undo /proc/self/mountinfo's octal escapes (\\040 for a space, ...)."""
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and path[i + 1 : i + 4].isdigit():
            out.append(chr(int(path[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def mount_points(mountinfo: str) -> list[str]:
    """Mount points listed in the text of /proc/self/mountinfo."""
    return [unescape_mount(line.split()[4]) for line in mountinfo.splitlines() if line.strip()]


def mounts_under(prefix: Path) -> list[str]:
    text = Path("/proc/self/mountinfo").read_text()
    base = str(prefix).rstrip("/") + "/"
    return [m for m in mount_points(text) if m == str(prefix) or m.startswith(base)]


def mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> None:
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    run(["mount", "-t", "overlay", "overlay", "-o", opts, str(target)], step="mount overlay")


def unmount_all(prefix: Path) -> None:
    """Unmount everything at or below ``prefix``, deepest first."""
    for point in sorted(mounts_under(prefix), key=len, reverse=True):
        proc = subprocess.run(["umount", point], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            run(["umount", "--lazy", point], step=f"unmount {point}")


# -- links and addresses ---------------------------------------------------


@dataclass(frozen=True)
class Link:
    name: str
    kind: str | None
    alias: str | None
    addresses: tuple[str, ...]  # "10.240.0.254/24"


def parse_links(ip_json: str) -> list[Link]:
    """Links from ``ip -d -j address show``."""
    out = []
    for item in json.loads(ip_json or "[]"):
        kind = (item.get("linkinfo") or {}).get("info_kind")
        addrs = tuple(
            f"{a['local']}/{a['prefixlen']}"
            for a in item.get("addr_info", [])
            if a.get("family") == "inet"
        )
        out.append(Link(item["ifname"], kind, item.get("ifalias"), addrs))
    return out


def links() -> list[Link]:
    return parse_links(run(["ip", "-d", "-j", "address", "show"], step="list network links"))


def create_bridge(name: str, alias: str, address: str) -> None:
    run(["ip", "link", "add", name, "type", "bridge"], step=f"create bridge {name}")
    run(["ip", "link", "set", name, "alias", alias], step=f"mark bridge {name}")


def ensure_bridge_address(name: str, address: str) -> None:
    run(["ip", "address", "replace", address, "dev", name], step=f"address on {name}")
    run(["ip", "link", "set", name, "up"], step=f"bring {name} up")


def delete_link(name: str) -> None:
    run(["ip", "link", "delete", name], step=f"delete link {name}")


def nft_apply(ruleset: str, step: str) -> None:
    run(["nft", "-f", "-"], step=step, input_text=ruleset)


def nft_has_table(table: str) -> bool:
    out = run(["nft", "list", "tables"], step="list nftables tables")
    return f"table inet {table}" in out.splitlines()


# -- cgroups ---------------------------------------------------------------
#
# With --keep-unit, systemd-nspawn puts the machine in the cgroup it was
# started from. Machines started from one process would share that cgroup
# (their systemd remove each other's unit cgroups: "Failed to attach to
# cgroup ... 219/CGROUP"; their kubelets would share /kubepods). So each
# machine is started from a cgroup of its own in every hierarchy, below
# the one kubeprem runs in (keeping any limit the host puts on it).

CGROUP_GROUP = "kubeprem-lab"


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """hierarchy key (controllers, ``name=systemd`` or ``""`` for v2) -> path."""
    out = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out[parts[1]] = parts[2]
    return out


def parse_cgroup_mounts(mountinfo: str) -> dict[str, str]:
    """hierarchy key -> mount point, from /proc/self/mountinfo text (the
    first mount of each, with its root at the hierarchy's root)."""
    out: dict[str, str] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5 or fields[3] != "/":
            continue
        after = line.split(" - ", 1)[1].split()
        fstype, super_opts = after[0], after[2] if len(after) > 2 else ""
        point = unescape_mount(fields[4])
        if fstype == "cgroup2":
            out.setdefault("", point)
        elif fstype == "cgroup":
            opts = [o for o in super_opts.split(",") if o not in ("rw", "ro")]
            names = [o for o in opts if o.startswith("name=")]
            known = (
                "cpu",
                "cpuacct",
                "cpuset",
                "memory",
                "devices",
                "freezer",
                "blkio",
                "pids",
                "net_cls",
                "net_prio",
                "perf_event",
                "hugetlb",
                "rdma",
                "misc",
            )
            ctrls = [o for o in opts if o in known]
            out.setdefault(",".join(names + ctrls) if names else ",".join(ctrls), point)
    return out


def machine_cgroup_dirs(unit: str, proc_cgroup: str, mountinfo: str) -> list[Path]:
    """The cgroup folders (one per hierarchy) a machine is started in."""
    mounts = parse_cgroup_mounts(mountinfo)
    dirs = []
    for key, path in parse_proc_cgroup(proc_cgroup).items():
        point = mounts.get(key)
        if point is None:
            # v1 controllers may be listed in another order than mounted
            point = next(
                (p for k, p in mounts.items() if k and set(k.split(",")) == set(key.split(","))),
                None,
            )
        if point is None:
            continue
        dirs.append(Path(point + path.rstrip("/")) / CGROUP_GROUP / unit)
    return dirs


def current_machine_cgroups(unit: str) -> list[Path]:
    return machine_cgroup_dirs(
        unit,
        Path("/proc/self/cgroup").read_text(),
        Path("/proc/self/mountinfo").read_text(),
    )


def make_cgroups(dirs: list[Path]) -> None:
    for d in dirs:
        for level in (d.parent, d):
            if level.exists():
                continue
            level.mkdir()
            # cpuset: a new v1 group has no CPUs until given its parent's
            for name in ("cpuset.cpus", "cpuset.mems"):
                src = level.parent / name
                if src.exists() and (level / name).exists():
                    (level / name).write_text(src.read_text().strip() or "\n")


def remove_cgroups(dirs: list[Path], *, attempts: int = 20) -> list[Path]:
    """rmdir each folder and everything below it, deepest first; the
    group folder above them too when it is left empty. What stayed."""
    left = []
    for d in dirs:
        for _ in range(attempts):
            if not d.exists():
                break
            for sub, _dirs, _files in sorted(os.walk(d), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(sub)
            if d.exists():
                time.sleep(0.1)
        if d.exists():
            left.append(d)
        else:
            with contextlib.suppress(OSError):
                os.rmdir(d.parent)
    return left


def enter_cgroups(dirs: list[Path]) -> None:
    """Move the calling process into these cgroups (run in the child)."""
    pid = str(os.getpid())
    for d in dirs:
        with open(d / "cgroup.procs", "w") as f:
            f.write(pid)


# Each lab machine's systemd (and its containerd and kubelet) takes inotify
# instances from root's per-user limit on the host; Debian's default of 128
# runs out with one or two 6-machine labs ("Too many open files" at boot).
INOTIFY_MINIMUMS = {
    "fs/inotify/max_user_instances": 1024,
    "fs/inotify/max_user_watches": 524288,
}


def raise_inotify_limits(proc_sys: Path = Path("/proc/sys")) -> dict[str, int]:
    """Raise the host's inotify limits to at least ``INOTIFY_MINIMUMS``; never
    lowers them. Returns the settings that were raised."""
    raised = {}
    for key, minimum in INOTIFY_MINIMUMS.items():
        path = proc_sys / key
        try:
            current = int(path.read_text().strip())
            if current < minimum:
                path.write_text(f"{minimum}\n")
                raised[key] = minimum
        except (OSError, ValueError) as exc:
            raise OperationError(f"cannot raise {path} to {minimum}: {exc}") from exc
    return raised

"""Lab machines: systemd-nspawn containers booting systemd and sshd, one per
machine of a site, on a private bridge with the site's addresses.

Called by the `kubeprem lab` commands and by lab tests. The pure decisions
(names, addresses, nspawn arguments, rules, unit texts) come from
``kubeprem.lab.layout``; the system calls live in ``kubeprem.lab.host``;
this module sequences them: check, prepare, boot, wait, tear down.

On the host, one lab is ``<lab root>/labs/<cluster>/`` (a folder per
machine: overlay upper and work layers, the mounted root, containerd's own
folder, the console log), a bridge marked with an alias, and an nftables
table. Everything about a lab can be found again from those, so a killed
earlier run is recovered from and `lab down` leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_interface
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kubeprem.errors import InputError, OperationError, PrerequisiteError
from kubeprem.lab import host
from kubeprem.lab.layout import (
    BRIDGE_ALIAS_PREFIX,
    DEFAULT_LAB_ROOT,
    NETWORK_UNIT_NAME,
    NSPAWN_ENV,
    LabPlan,
    MachinePlan,
    hosts_file,
    known_hosts_line,
    network_unit,
    nft_delete,
    nft_ruleset,
    nspawn_argv,
    plan_lab,
    ssh_argv,
    sshd_config,
)
from kubeprem.lab.rootfs import ensure_rootfs
from kubeprem.pki.sshkey import ensure_ssh_key, openssh_keypair, public_key_line
from kubeprem.site import LoadedSite

Progress = Callable[[str], None]

SSH_WAIT_SECONDS = 180.0
POWEROFF_GRACE_SECONDS = 3.0


def lab_root() -> Path:
    """Where rootfs caches and machine copies live; KUBEPREM_LAB_ROOT overrides."""
    return Path(os.environ.get("KUBEPREM_LAB_ROOT") or DEFAULT_LAB_ROOT)


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class MachineStatus:
    name: str
    address: str
    state: str  # running | stopped | absent
    ssh: bool | None = None
    nspawn_pid: int | None = None
    pid1: int | None = None


# -- checks (pure) ----------------------------------------------------------


def conflicts(plan: LabPlan, links: list[host.Link]) -> list[str]:
    """Why this lab cannot be set up on a host with these links, if at all."""
    problems = []
    wanted = {str(m.address): m.name for m in plan.machines}
    wanted[str(plan.vip)] = "the API VIP"
    wanted[str(plan.host.ip)] = "the lab host address"
    for link in links:
        if link.name == plan.bridge:
            if link.kind != "bridge" or link.alias != plan.bridge_alias:
                problems.append(
                    f"the network interface name '{plan.bridge}' (the lab bridge of cluster "
                    f"'{plan.cluster}') is taken by something that is not this lab; rename "
                    "the cluster or remove that interface"
                )
            continue
        for addr in link.addresses:
            iface = ip_interface(addr)
            if str(iface.ip) in wanted:
                problems.append(
                    f"address {iface.ip} ({wanted[str(iface.ip)]}) is already in use on this "
                    f"host's interface {link.name}"
                )
            elif (
                isinstance(iface.network, IPv4Network)
                and iface.network.overlaps(plan.subnet)
                and not iface.ip.is_loopback
            ):
                problems.append(
                    f"the node subnet {plan.subnet} overlaps {iface.network} on this host's "
                    f"interface {link.name}; choose another network.node_cidr"
                )
    return problems


def check_prerequisites(*, need_debootstrap: bool) -> None:
    if os.geteuid() != 0:
        raise PrerequisiteError("the lab needs root (machines, mounts, bridge, firewall)")
    programs = ["systemd-nspawn", "ip", "nft", "mount", "umount", "ssh"]
    if need_debootstrap:
        programs.append("debootstrap")
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise PrerequisiteError(
            f"missing programs for the lab: {', '.join(missing)}; install the packages "
            "listed in deps/lab.txt"
        )


# -- one lab's files --------------------------------------------------------


def _lock_path(plan: LabPlan) -> Path:
    return plan.lab_dir.parent / f".{plan.cluster}.lock"


@contextlib.contextmanager
def _lab_lock(plan: LabPlan) -> Iterator[None]:
    lock = _lock_path(plan)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def known_hosts_path(loaded: LoadedSite) -> Path:
    """Host keys of the lab's machines, for `lab ssh` and kubeprem's SSH."""
    return loaded.state_dir / "ssh" / "known_hosts"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.kubeprem-tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def _host_key(root: Path) -> str:
    """The machine's own ed25519 host key, created on its first start."""
    key = root / "etc" / "ssh" / "ssh_host_ed25519_key"
    pub = key.with_name(key.name + ".pub")
    if not key.exists() or not pub.exists():
        private, public = openssh_keypair(Ed25519PrivateKey.generate(), "root@lab")
        _write(key, private.decode(), 0o600)
        _write(pub, public.decode(), 0o644)
    return pub.read_text().strip()


def write_machine_files(
    loaded: LoadedSite, plan: LabPlan, machine: MachinePlan, authorized: str
) -> str:
    """Everything machine-specific, into its own copy; its host public key."""
    root = machine.root
    etc = root / "etc"
    _write(etc / "hostname", machine.name + "\n")
    _write(etc / "hosts", hosts_file(loaded.site, machine.name))
    mid = etc / "machine-id"
    if not mid.exists() or len(mid.read_text().strip()) != 32:
        _write(mid, secrets.token_hex(16) + "\n", 0o444)
    _write(etc / "ssh" / "sshd_config.d" / "kubeprem-lab.conf", sshd_config(machine))
    ssh_dir = root / "root" / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ssh_dir.chmod(0o700)
    _write(ssh_dir / "authorized_keys", authorized + "\n", 0o600)
    units = etc / "systemd" / "system"
    _write(units / NETWORK_UNIT_NAME, network_unit(plan, machine))
    for target in ("multi-user.target.wants", "network-online.target.wants"):
        link = units / target / NETWORK_UNIT_NAME
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(f"/etc/systemd/system/{NETWORK_UNIT_NAME}")
    return _host_key(root)


def _host_keys(plan: LabPlan) -> dict[str, str]:
    """machine name -> host public key, for every machine that has a copy.
    Keys are written through the overlay, so they sit in its upper layer."""
    keys = {}
    for m in plan.machines:
        pub = m.upper / "etc" / "ssh" / "ssh_host_ed25519_key.pub"
        with contextlib.suppress(OSError):
            keys[m.name] = pub.read_text().strip()
    return keys


def _write_known_hosts(loaded: LoadedSite, plan: LabPlan, keys: dict[str, str]) -> None:
    path = known_hosts_path(loaded)
    ours = {m.name: m for m in plan.machines}
    kept = _foreign_known_hosts(path, plan)
    lines = [known_hosts_line(ours[name], key) for name, key in sorted(keys.items())]
    _write(path, "".join(kept + lines), 0o644)


def _foreign_known_hosts(path: Path, plan: LabPlan) -> list[str]:
    """Lines of a known_hosts file that are not about this lab's machines."""
    if not path.exists():
        return []
    ours = {str(m.address) for m in plan.machines} | {m.name for m in plan.machines}
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        hosts = {h.strip("[").split("]")[0] for h in line.split(" ", 1)[0].split(",")}
        if not hosts & ours:
            kept.append(line)
    return kept


def _write_lab_record(loaded: LoadedSite, plan: LabPlan) -> None:
    record = {
        "cluster": plan.cluster,
        "site": str(loaded.path),
        "bridge": plan.bridge,
        "host_address": str(plan.host),
        "rootfs": str(plan.rootfs),
        "machines": [
            {"name": m.name, "address": str(m.address), "unit": m.unit, "port": m.ssh_port}
            for m in plan.machines
        ],
    }
    _write(plan.lab_dir / "lab.json", json.dumps(record, indent=2) + "\n")


# -- network ----------------------------------------------------------------


def ensure_network(plan: LabPlan) -> None:
    """The bridge (ours, with the host address), our firewall table, and
    inotify limits high enough for several machines' systemd."""
    host.raise_inotify_limits()
    existing = {link.name: link for link in host.links()}
    if plan.bridge not in existing:
        host.create_bridge(plan.bridge, plan.bridge_alias, str(plan.host))
    host.ensure_bridge_address(plan.bridge, str(plan.host))
    host.nft_apply(nft_ruleset(plan), step=f"firewall table {plan.table}")


# -- machines ---------------------------------------------------------------


def machine_processes(plan: LabPlan) -> dict[str, tuple[int, int | None]]:
    """machine name -> (nspawn pid, PID 1) for this lab's running machines."""
    by_unit = host.nspawn_processes(host.processes())
    return {m.name: by_unit[m.unit] for m in plan.machines if m.unit in by_unit}


def _prepare_copy(plan: LabPlan, machine: MachinePlan) -> None:
    """The machine's writable copy: an overlay on the cached root, kept
    across power cycles; rebuilt when the cached root it sat on changed."""
    meta = machine.base / "machine.json"
    if meta.exists() and _read_meta(machine.base).get("rootfs") != str(plan.rootfs):
        _remove_copy(machine.base)
    for d in (machine.upper, machine.work, machine.root, machine.containerd):
        d.mkdir(parents=True, exist_ok=True)
    if str(machine.root) not in host.mounts_under(machine.root):
        host.mount_overlay(plan.rootfs, machine.upper, machine.work, machine.root)
    old = _read_meta(machine.base)
    _write(meta, json.dumps({**old, "rootfs": str(plan.rootfs), "unit": machine.unit}) + "\n")


def _remove_copy(base: Path) -> None:
    host.unmount_all(base)
    shutil.rmtree(base, ignore_errors=False)


def _read_meta(machine_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((machine_dir / "machine.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _boot(plan: LabPlan, machine: MachinePlan) -> int:
    with contextlib.suppress(FileNotFoundError):
        machine.console_log.unlink()
    meta = _read_meta(machine.base)
    stale = [Path(p) for p in meta.get("cgroups", [])]
    cgroups = host.current_machine_cgroups(machine.unit)
    host.remove_cgroups(stale + cgroups, attempts=1)
    host.make_cgroups(cgroups)
    meta["cgroups"] = [str(d) for d in cgroups]
    _write(machine.base / "machine.json", json.dumps(meta) + "\n")
    return host.spawn_detached(nspawn_argv(plan, machine), NSPAWN_ENV, machine.console_log, cgroups)


def _console_tail(machine: MachinePlan, lines: int = 3) -> str:
    try:
        text = machine.console_log.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line for line in text.strip().splitlines()[-lines:])


def ssh_ready(loaded: LoadedSite, machine: MachinePlan) -> bool:
    """Whether the machine accepts our key over SSH with its known host key."""
    try:
        with socket.create_connection((str(machine.address), machine.ssh_port), timeout=1):
            pass
    except OSError:
        return False
    argv = ssh_argv(machine, loaded.ssh_key(), known_hosts_path(loaded), ["true"])
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=15, check=False)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def _wait_ssh(loaded: LoadedSite, machine: MachinePlan, nspawn_pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not host.alive(nspawn_pid):
            raise OperationError(
                f"{machine.name}: systemd-nspawn exited while booting: "
                f"{_console_tail(machine)} (log: {machine.console_log})"
            )
        if ssh_ready(loaded, machine):
            return
        time.sleep(0.5)
    raise OperationError(
        f"{machine.name}: no SSH on {machine.address}:{machine.ssh_port} after {timeout:.0f} s "
        f"(console: {machine.console_log})"
    )


def lab_up(
    loaded: LoadedSite,
    *,
    only: list[str] | None = None,
    progress: Progress = _quiet,
    root: Path | None = None,
) -> list[MachineStatus]:
    """Create and boot the site's machines (or ``only`` these), wait for SSH.

    Running machines are kept; stopped ones boot from their existing copy;
    leftovers of a killed earlier lab are reused or replaced.
    """
    base = root or lab_root()
    plan = plan_lab(loaded.site, base)
    targets = [plan.machine(n) for n in only] if only else list(plan.machines)
    rootfs_ready = (plan.rootfs / "etc" / "os-release").exists()
    check_prerequisites(need_debootstrap=not rootfs_ready)
    problems = conflicts(plan, host.links())
    if problems:
        raise InputError("; ".join(problems))
    key = ensure_ssh_key(loaded.ssh_key())
    authorized = public_key_line(key)
    base.mkdir(parents=True, exist_ok=True)
    with _lab_lock(plan):
        if not rootfs_ready:
            progress(f"building the machines' root filesystem in {plan.rootfs} (once)")
        ensure_rootfs(base)
        plan.lab_dir.mkdir(parents=True, exist_ok=True)
        _write_lab_record(loaded, plan)
        ensure_network(plan)
        running = machine_processes(plan)
        to_boot = [m for m in targets if m.name not in running]

        def prepare(m: MachinePlan) -> None:
            # a running machine's disk is never touched
            _prepare_copy(plan, m)
            write_machine_files(loaded, plan, m, authorized)

        if to_boot:
            with ThreadPoolExecutor(max_workers=len(to_boot)) as pool:
                list(pool.map(prepare, to_boot))
        _write_known_hosts(loaded, plan, _host_keys(plan))
        started: dict[str, int] = {}
        for m in to_boot:
            progress(f"booting {m.name} ({m.address})")
            started[m.name] = _boot(plan, m)

        def wait(m: MachinePlan) -> None:
            pid = started.get(m.name) or running[m.name][0]
            _wait_ssh(loaded, m, pid, SSH_WAIT_SECONDS)

        with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
            list(pool.map(wait, targets))
    return lab_status(loaded, root=base)


def _units_of_lab(plan: LabPlan) -> dict[str, str]:
    """unit -> machine folder, for the site's machines and any left in the
    lab folder by an earlier version of the site."""
    units = {m.unit: str(m.base) for m in plan.machines}
    if plan.lab_dir.is_dir():
        for meta in plan.lab_dir.glob("*/machine.json"):
            with contextlib.suppress(ValueError, OSError):
                units.setdefault(json.loads(meta.read_text())["unit"], str(meta.parent))
    return units


def lab_down(loaded: LoadedSite, *, progress: Progress = _quiet, root: Path | None = None) -> None:
    """Stop every machine, remove copies, mounts, bridge and firewall table."""
    base = root or lab_root()
    plan = plan_lab(loaded.site, base)
    check_prerequisites(need_debootstrap=False)
    with _lab_lock(plan):
        units = _units_of_lab(plan)
        found = host.nspawn_processes(host.processes())
        victims = [(u, found[u]) for u in units if u in found]

        def stop(item: tuple[str, tuple[int, int | None]]) -> None:
            _, (pid, pid1) = item
            host.stop_machine(pid, pid1, grace=POWEROFF_GRACE_SECONDS)

        if victims:
            progress(f"stopping {len(victims)} machines")
            with ThreadPoolExecutor(max_workers=len(victims)) as pool:
                list(pool.map(stop, victims))
        cgroups = [Path(p) for d in units.values() for p in _read_meta(Path(d)).get("cgroups", [])]
        left = host.remove_cgroups(cgroups)
        if left:
            progress(f"cgroups still in use, left behind: {', '.join(map(str, left))}")
        if plan.lab_dir.exists():
            host.unmount_all(plan.lab_dir)
            shutil.rmtree(plan.lab_dir)
        for unit in units:
            with contextlib.suppress(OSError):
                shutil.rmtree(Path("/run/systemd/nspawn/propagate") / unit)
        for link in host.links():
            if link.name == plan.bridge and link.alias == plan.bridge_alias:
                host.delete_link(plan.bridge)
        if host.nft_has_table(plan.table):
            host.nft_apply(nft_delete(plan), step=f"remove firewall table {plan.table}")
        kh = known_hosts_path(loaded)
        if kh.exists():
            kept = _foreign_known_hosts(kh, plan)
            if kept:
                _write(kh, "".join(kept))
            else:
                kh.unlink()
        _lock_path(plan).unlink(missing_ok=True)


def lab_status(loaded: LoadedSite, *, root: Path | None = None) -> list[MachineStatus]:
    plan = plan_lab(loaded.site, root or lab_root())
    procs = machine_processes(plan)
    out = []
    for m in plan.machines:
        if m.name in procs:
            pid, pid1 = procs[m.name]
            out.append(
                MachineStatus(m.name, str(m.address), "running", ssh_ready(loaded, m), pid, pid1)
            )
        elif (m.base / "machine.json").exists():
            out.append(MachineStatus(m.name, str(m.address), "stopped"))
        else:
            out.append(MachineStatus(m.name, str(m.address), "absent"))
    return out


@dataclass(frozen=True)
class LabSummary:
    cluster: str
    site: str
    bridge: str
    machines: list[MachineStatus]


def all_labs(*, root: Path | None = None) -> list[LabSummary]:
    """Every lab on this host, from their records (for `lab status` without a site)."""
    labs_dir = (root or lab_root()) / "labs"
    by_unit = host.nspawn_processes(host.processes()) if labs_dir.is_dir() else {}
    out = []
    for record_path in sorted(labs_dir.glob("*/lab.json")):
        try:
            rec = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        machines = []
        for m in rec.get("machines", []):
            running = by_unit.get(m["unit"])
            state = (
                "running"
                if running
                else "stopped"
                if (record_path.parent / m["name"] / "machine.json").exists()
                else "absent"
            )
            machines.append(
                MachineStatus(
                    m["name"],
                    m["address"],
                    state,
                    None,
                    running[0] if running else None,
                    running[1] if running else None,
                )
            )
        out.append(LabSummary(rec["cluster"], rec["site"], rec["bridge"], machines))
    return out


def poweroff(loaded: LoadedSite, name: str, *, root: Path | None = None) -> bool:
    """Cut a machine's power: SIGKILL its PID 1. False when it was not running."""
    check_prerequisites(need_debootstrap=False)
    plan = plan_lab(loaded.site, root or lab_root())
    machine = plan.machine(name)
    procs = machine_processes(plan)
    if machine.name not in procs:
        return False
    pid, pid1 = procs[machine.name]
    host.stop_machine(pid, pid1, grace=0)
    return True


def ssh(loaded: LoadedSite, name: str, command: list[str], *, root: Path | None = None) -> int:
    """Run ``command`` on a machine (or a shell when empty); its exit status."""
    plan = plan_lab(loaded.site, root or lab_root())
    machine = plan.machine(name)
    kh = known_hosts_path(loaded)
    if not kh.exists():
        raise OperationError(f"no lab known_hosts at {kh}; run `kubeprem lab up` first")
    argv = ssh_argv(machine, loaded.ssh_key(), kh, command)
    try:
        return subprocess.run(argv, check=False).returncode
    except FileNotFoundError as exc:
        raise PrerequisiteError("ssh is not installed (apt-get install openssh-client)") from exc


__all__ = [
    "BRIDGE_ALIAS_PREFIX",
    "LabSummary",
    "MachineStatus",
    "all_labs",
    "conflicts",
    "known_hosts_path",
    "lab_down",
    "lab_status",
    "lab_up",
    "poweroff",
    "ssh",
]

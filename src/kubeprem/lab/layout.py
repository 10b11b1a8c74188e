"""The pure side of the lab: names, addresses, paths, nspawn arguments,
firewall rules and the files written into each machine.

Called by ``kubeprem.lab.machines`` (which does the acting) and by unit
tests; nothing here touches the system, so everything can be checked
without root.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from kubeprem.errors import InputError
from kubeprem.site.model import Site

DEFAULT_LAB_ROOT = Path("/var/lib/kubeprem/lab")
SUITE = "bookworm"

# What every lab machine gets from debootstrap: systemd and sshd to behave
# like a server, and what kubelet and kube-proxy call (iptables, conntrack,
# socat, ipset, ethtool, mount, nsenter); the last few are for operators.
PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "ca-certificates",
    "iptables",
    "conntrack",
    "socat",
    "ipset",
    "ethtool",
    "kmod",
    "util-linux",
    "mount",
    "libseccomp2",
    "procps",
    "iputils-ping",
    "curl",
    "less",
    # What kubeprem expects the operating system of a real server to provide
    # from its own mirror (not shipped as artifacts): the load balancer's
    # programs and nftables for the node firewall.
    "haproxy",
    "keepalived",
    "nftables",
    # Most servers have a Python; the benchmark against ansible-core needs
    # it on the targets (kubeprem itself never runs anything but sh there).
    "python3-minimal",
)

# Bumped when the lab-only files baked into the cached root change.
ROOTFS_REVISION = "2"

# Marks a bridge as ours (its `ip link` alias) so that `lab up` never adopts
# or deletes a bridge someone else made.
BRIDGE_ALIAS_PREFIX = "kubeprem-lab:"


def rootfs_key(packages: tuple[str, ...] = PACKAGES, suite: str = SUITE) -> str:
    """Short hash naming one cached root filesystem."""
    text = "\n".join([suite, ROOTFS_REVISION, *sorted(packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def rootfs_dir(lab_root: Path, packages: tuple[str, ...] = PACKAGES) -> Path:
    return lab_root / f"rootfs-{SUITE}-{rootfs_key(packages)}"


def _short(name: str, limit: int, prefix: str) -> str:
    """``prefix + name``, or when too long a cut of it plus a hash of ``name``."""
    full = prefix + name
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:5]
    keep = limit - len(prefix) - len(digest) - 1
    return f"{prefix}{name[:keep].rstrip('-')}-{digest}"


def bridge_name(cluster: str) -> str:
    """The lab's Linux bridge: at most 15 characters, from the cluster name."""
    return _short(cluster, 15, "kp-")


def nft_table(cluster: str) -> str:
    """Our own nftables table (inet family) for one lab."""
    return "kubeprem_lab_" + bridge_name(cluster).replace("-", "_")


def machine_unit_name(cluster: str, machine: str) -> str:
    """The systemd-nspawn machine name: unique on the host, at most 64 chars."""
    return _short(f"{cluster}-{machine}", 64, "kp-")


def host_address(site: Site) -> IPv4Interface:
    """The host's address on the bridge: the highest address of the node
    subnet that no machine and not the VIP uses."""
    net = site.network.node_cidr
    taken = {m.address for m in site.machines} | {site.api.vip}
    if net.prefixlen >= 31:
        raise InputError(f"network.node_cidr {net} is too small for a lab")
    candidate = net.broadcast_address - 1
    while candidate > net.network_address:
        if candidate not in taken:
            return IPv4Interface(f"{candidate}/{net.prefixlen}")
        candidate -= 1
    raise InputError(f"network.node_cidr {net} has no free address left for the lab host")


@dataclass(frozen=True)
class MachinePlan:
    """One lab machine: its names, address and folders on the host."""

    name: str
    unit: str  # nspawn machine name
    address: IPv4Address
    ssh_port: int
    base: Path  # <lab dir>/<name>

    @property
    def upper(self) -> Path:
        return self.base / "upper"

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def root(self) -> Path:
        """The overlay mount the machine boots from."""
        return self.base / "root"

    @property
    def containerd(self) -> Path:
        """Bound at /var/lib/containerd: its overlayfs snapshotter cannot
        stack on the machine's overlay root."""
        return self.base / "containerd"

    @property
    def console_log(self) -> Path:
        return self.base / "console.log"


@dataclass(frozen=True)
class LabPlan:
    """Everything `lab up` needs to know about one site's lab."""

    cluster: str
    bridge: str
    table: str
    subnet: IPv4Network
    host: IPv4Interface
    vip: IPv4Address
    lab_dir: Path
    rootfs: Path
    machines: tuple[MachinePlan, ...]

    def machine(self, name: str) -> MachinePlan:
        for m in self.machines:
            if m.name == name:
                return m
        names = ", ".join(m.name for m in self.machines)
        raise InputError(f"no machine '{name}' in this site; machines: {names}")

    @property
    def bridge_alias(self) -> str:
        return BRIDGE_ALIAS_PREFIX + self.cluster


def plan_lab(site: Site, lab_root: Path = DEFAULT_LAB_ROOT) -> LabPlan:
    cluster = site.cluster.name
    lab_dir = lab_root / "labs" / cluster
    machines = tuple(
        MachinePlan(
            name=m.name,
            unit=machine_unit_name(cluster, m.name),
            address=m.address,
            ssh_port=m.ssh.port or site.ssh.port,
            base=lab_dir / m.name,
        )
        for m in site.machines
    )
    return LabPlan(
        cluster=cluster,
        bridge=bridge_name(cluster),
        table=nft_table(cluster),
        subnet=site.network.node_cidr,
        host=host_address(site),
        vip=site.api.vip,
        lab_dir=lab_dir,
        rootfs=rootfs_dir(lab_root),
        machines=machines,
    )


# -- systemd-nspawn ------------------------------------------------------

SYSCALL_FILTER = (
    "@keyring @privileged @mount @module @raw-io @reboot @swap @clock "
    "@cpu-emulation @obsolete bpf perf_event_open"
)

NSPAWN_ENV = {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "1"}


def nspawn_argv(plan: LabPlan, machine: MachinePlan) -> list[str]:
    """The systemd-nspawn command that boots one machine.

    The host has no systemd as PID 1 and no D-Bus, hence --register=no
    --keep-unit. Writable /proc/sys (environment), /dev/kmsg, the keyring
    system calls and the device rule are what kubelet and runc need.
    """
    return [
        "systemd-nspawn",
        "--quiet",
        f"--directory={machine.root}",
        f"--machine={machine.unit}",
        f"--hostname={machine.name}",
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--network-bridge={plan.bridge}",
        "--capability=all",
        "--bind=/dev/kmsg",
        f"--bind={machine.containerd}:/var/lib/containerd",
        f"--system-call-filter={SYSCALL_FILTER}",
        "--property=DeviceAllow=char-* rwm",
        "--console=read-only",
        "--link-journal=no",
        "--resolv-conf=off",
        "--timezone=off",
    ]


# -- firewall --------------------------------------------------------------


def nft_ruleset(plan: LabPlan) -> str:
    """Our table: nothing is routed into or out of the lab bridge (the
    bridge has no uplink), so lab traffic never leaves the lab; no NAT.

    Frames bridged between two lab machines stay in the lab whatever their
    addresses: pod-to-pod traffic (10.200.x.y) crosses the bridge between
    workers, and with br_netfilter loaded it passes this hook with both
    interfaces being the bridge, so it is not dropped.

    ``nft -f`` of this text replaces the table whole (create, delete,
    recreate), so applying it again is harmless.
    """
    br = plan.bridge
    return (
        f"table inet {plan.table} {{}}\n"
        f"delete table inet {plan.table}\n"
        f"table inet {plan.table} {{\n"
        f"  chain forward {{\n"
        f"    type filter hook forward priority filter - 10; policy accept;\n"
        f'    iifname "{br}" oifname != "{br}" counter drop\n'
        f'    oifname "{br}" iifname != "{br}" counter drop\n'
        f"  }}\n"
        f"}}\n"
    )


def nft_delete(plan: LabPlan) -> str:
    """Remove our table, whether or not it exists."""
    return f"table inet {plan.table} {{}}\ndelete table inet {plan.table}\n"


# -- files written into each machine --------------------------------------

CGROUPS_SCRIPT = """\
#!/bin/sh
# kubeprem lab only: systemd-nspawn mounts the cgroup controllers read-only;
# containerd and the kubelet need to write there. A plain remount,rw fails
# with "mount point is busy" on memory, a bind remount does not.
for d in /sys/fs/cgroup/*/; do
  mount -o remount,bind,rw "$d" || true
done
"""

CGROUPS_UNIT = """\
[Unit]
Description=kubeprem lab: cgroup controllers read-write
Before=containerd.service kubelet.service
ConditionVirtualization=container

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/kubeprem-lab-cgroups

[Install]
WantedBy=multi-user.target
"""

NETWORK_UNIT_NAME = "kubeprem-lab-network.service"
CGROUPS_UNIT_NAME = "kubeprem-lab-cgroups.service"


def network_unit(plan: LabPlan, machine: MachinePlan) -> str:
    """eth0 with the site address and a default route via the host.

    networkd never brings nspawn's host0 up here (it waits for udev), so a
    oneshot renames it to eth0 (the interface keepalived is told to use)
    and sets it up with ip(8).
    """
    prefix = plan.subnet.prefixlen
    return (
        "[Unit]\n"
        "Description=kubeprem lab: eth0 with the site address\n"
        "Before=network-pre.target network.target network-online.target ssh.service\n"
        "Wants=network-pre.target\n"
        "ConditionVirtualization=container\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        "ExecStart=-/sbin/ip link set host0 name eth0\n"
        "ExecStart=/sbin/ip link set lo up\n"
        "ExecStart=/sbin/ip link set eth0 up\n"
        f"ExecStart=/sbin/ip address replace {machine.address}/{prefix} dev eth0\n"
        f"ExecStart=/sbin/ip route replace default via {plan.host.ip} dev eth0\n"
        "\n"
        "[Install]\n"
        "WantedBy=network-online.target multi-user.target\n"
    )


def sshd_config(machine: MachinePlan) -> str:
    return (
        "# kubeprem lab: root with keys only, this machine's own host key\n"
        f"Port {machine.ssh_port}\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UseDNS no\n"
    )


def hosts_file(site: Site, machine_name: str) -> str:
    lines = [
        "127.0.0.1\tlocalhost",
        f"127.0.1.1\t{machine_name}",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
        "",
        "# the lab's machines (kubeprem lab)",
    ]
    lines += [f"{m.address}\t{m.name}" for m in site.machines]
    return "\n".join(lines) + "\n"


def known_hosts_line(machine: MachinePlan, public_key: str) -> str:
    """One known_hosts entry for a machine, by address and name."""
    key = " ".join(public_key.split()[:2])
    hosts = [str(machine.address), machine.name]
    if machine.ssh_port != 22:
        hosts = [f"[{h}]:{machine.ssh_port}" for h in hosts]
    return f"{','.join(hosts)} {key}\n"


def ssh_argv(
    machine: MachinePlan, key: Path, known_hosts: Path, command: list[str], *, user: str = "root"
) -> list[str]:
    """The ssh(1) command for `lab ssh`: strict host keys, only our key.

    The remote command is quoted here, once, because sshd hands it to a shell.
    """
    argv = [
        "ssh",
        "-i",
        str(key),
        "-p",
        str(machine.ssh_port),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
    ]
    if command:
        argv += ["-o", "BatchMode=yes", f"{user}@{machine.address}", "--", shlex.join(command)]
    else:
        argv += ["-t", f"{user}@{machine.address}"]
    return argv

"""The lab's pure parts: names, addresses, nspawn arguments, firewall, units,
parsers of /proc text, conflict checks, the deployment SSH key."""

from __future__ import annotations

import json
import stat
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kubeprem.errors import InputError
from kubeprem.lab import host
from kubeprem.lab.layout import (
    PACKAGES,
    bridge_name,
    host_address,
    known_hosts_line,
    machine_unit_name,
    network_unit,
    nft_ruleset,
    nft_table,
    nspawn_argv,
    plan_lab,
    rootfs_key,
    ssh_argv,
    sshd_config,
)
from kubeprem.lab.machines import conflicts
from kubeprem.lab.rootfs import debootstrap_argv, mirror_from_sources
from kubeprem.pki.sshkey import ensure_ssh_key, public_key_line
from kubeprem.site import Site, example_text, parse_site


def site_named(name: str, extra: str = "") -> Site:
    text = example_text().replace("  name: kubeprem ", f"  name: {name} ", 1) + extra
    site, _ = parse_site(text, "site.yaml")
    return site


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [("kubeprem", "kp-kubeprem"), ("lab", "kp-lab"), ("abcdefghijkl", "kp-abcdefghijkl")],
)
def test_bridge_name_short(cluster: str, expected: str) -> None:
    assert bridge_name(cluster) == expected


def test_bridge_name_long_is_cut_with_hash_and_distinct() -> None:
    a = bridge_name("a-very-long-cluster-name")
    b = bridge_name("a-very-long-cluster-other")
    assert len(a) <= 15 and len(b) <= 15
    assert a != b
    assert a.startswith("kp-a-very")
    assert nft_table("a-very-long-cluster-name") == "kubeprem_lab_" + a.replace("-", "_")


def test_machine_unit_name_fits_64() -> None:
    assert machine_unit_name("kubeprem", "worker-0") == "kp-kubeprem-worker-0"
    long = machine_unit_name("c" * 63, "m" * 63)
    assert len(long) <= 64


def test_host_address_is_highest_free(example_site: Site) -> None:
    assert str(host_address(example_site)) == "10.240.0.254/24"
    crowded = site_named(
        "x",
    ).model_copy(
        update={
            "machines": [
                *example_site.machines,
                example_site.machines[0].model_copy(
                    update={"name": "top", "address": IPv4Address("10.240.0.254")}
                ),
            ]
        }
    )
    assert str(host_address(crowded)) == "10.240.0.253/24"


def test_plan_paths(example_site: Site) -> None:
    plan = plan_lab(example_site, Path("/lab"))
    assert plan.bridge == "kp-kubeprem"
    assert plan.lab_dir == Path("/lab/labs/kubeprem")
    m = plan.machine("worker-0")
    assert m.root == Path("/lab/labs/kubeprem/worker-0/root")
    assert m.containerd == Path("/lab/labs/kubeprem/worker-0/containerd")
    assert plan.rootfs.name == f"rootfs-bookworm-{rootfs_key()}"
    with pytest.raises(InputError, match="no machine 'nope'"):
        plan.machine("nope")


def test_rootfs_key_depends_on_packages() -> None:
    assert rootfs_key(PACKAGES) == rootfs_key(tuple(reversed(PACKAGES)))
    assert rootfs_key(PACKAGES) != rootfs_key((*PACKAGES, "vim"))


def test_nspawn_argv_has_the_lab_notes_settings(example_site: Site) -> None:
    plan = plan_lab(example_site, Path("/lab"))
    argv = nspawn_argv(plan, plan.machine("controller-0"))
    assert argv[0] == "systemd-nspawn"
    for needed in (
        "--boot",
        "--register=no",
        "--keep-unit",
        "--network-bridge=kp-kubeprem",
        "--capability=all",
        "--bind=/dev/kmsg",
        "--property=DeviceAllow=char-* rwm",
        "--directory=/lab/labs/kubeprem/controller-0/root",
        "--machine=kp-kubeprem-controller-0",
        "--bind=/lab/labs/kubeprem/controller-0/containerd:/var/lib/containerd",
    ):
        assert needed in argv
    filt = next(a for a in argv if a.startswith("--system-call-filter="))
    assert "@keyring" in filt


def test_firewall_drops_everything_routed_through_the_bridge(example_site: Site) -> None:
    plan = plan_lab(example_site, Path("/lab"))
    rules = nft_ruleset(plan)
    assert rules.startswith("table inet kubeprem_lab_kp_kubeprem {}\ndelete table")
    assert 'iifname "kp-kubeprem" oifname != "kp-kubeprem" counter drop' in rules
    assert 'oifname "kp-kubeprem" iifname != "kp-kubeprem" counter drop' in rules
    # bridged pod traffic between machines (other addresses) is not dropped
    assert "daddr" not in rules
    assert "masquerade" not in rules and "nat" not in rules


def test_network_unit_renames_host0_and_routes_via_host(example_site: Site) -> None:
    plan = plan_lab(example_site, Path("/lab"))
    unit = network_unit(plan, plan.machine("worker-1"))
    assert "ExecStart=-/sbin/ip link set host0 name eth0" in unit
    assert "ip address replace 10.240.0.21/24 dev eth0" in unit
    assert "ip route replace default via 10.240.0.254 dev eth0" in unit
    assert "Before=network-pre.target" in unit


def test_sshd_keys_only(example_site: Site) -> None:
    plan = plan_lab(example_site, Path("/lab"))
    text = sshd_config(plan.machine("worker-1"))
    assert "PermitRootLogin prohibit-password" in text
    assert "PasswordAuthentication no" in text
    assert "Port 22" in text


def test_known_hosts_and_ssh_argv(example_site: Site) -> None:
    plan = plan_lab(example_site, Path("/lab"))
    m = plan.machine("worker-2")
    line = known_hosts_line(m, "ssh-ed25519 AAAAkey root@lab")
    assert line == "10.240.0.22,worker-2 ssh-ed25519 AAAAkey\n"
    argv = ssh_argv(m, Path("/k"), Path("/kh"), ["echo", "a b", "$HOME"])
    assert "StrictHostKeyChecking=yes" in argv
    assert argv[-3:] == ["root@10.240.0.22", "--", "echo 'a b' '$HOME'"]
    interactive = ssh_argv(m, Path("/k"), Path("/kh"), [])
    assert interactive[-2:] == ["-t", "root@10.240.0.22"]


def test_mirror_from_deb822_and_legacy() -> None:
    deb822 = (
        "Types: deb\n# comment\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\n"
    )
    assert mirror_from_sources(deb822) == "http://mirror.example/debian"
    legacy = "deb [arch=amd64] http://old.example/debian bookworm main\n"
    assert mirror_from_sources("", legacy) == "http://old.example/debian"
    assert mirror_from_sources("", "") is None
    argv = debootstrap_argv(Path("/t"), "http://m/debian")
    assert argv[:2] == ["debootstrap", "--variant=minbase"]
    assert "openssh-server" in argv[2] and "conntrack" in argv[2]


def test_conflicts(example_site: Site) -> None:
    plan = plan_lab(example_site, Path("/lab"))
    ours = host.Link("kp-kubeprem", "bridge", "kubeprem-lab:kubeprem", ("10.240.0.254/24",))
    eth = host.Link("eth0", None, None, ("192.0.2.2/24",))
    assert conflicts(plan, [ours, eth]) == []
    foreign = host.Link("kp-kubeprem", "bridge", None, ())
    assert "taken by something that is not this lab" in conflicts(plan, [foreign])[0]
    used = host.Link("lo", None, None, ("127.0.0.1/8", "10.240.0.11/32"))
    assert conflicts(plan, [used]) == [
        "address 10.240.0.11 (controller-1) is already in use on this host's interface lo"
    ]
    overlap = host.Link("eth1", None, None, ("10.240.0.5/16",))
    assert "overlaps 10.240.0.0/16" in conflicts(plan, [overlap])[0]


def test_parse_links() -> None:
    data = [
        {
            "ifname": "kp-x",
            "ifalias": "kubeprem-lab:x",
            "linkinfo": {"info_kind": "bridge"},
            "addr_info": [
                {"family": "inet", "local": "10.240.0.254", "prefixlen": 24},
                {"family": "inet6", "local": "fe80::1", "prefixlen": 64},
            ],
        },
        {"ifname": "lo", "addr_info": []},
    ]
    links = host.parse_links(json.dumps(data))
    assert links[0] == host.Link("kp-x", "bridge", "kubeprem-lab:x", ("10.240.0.254/24",))
    assert links[1].kind is None


def test_nspawn_processes_finds_pid1() -> None:
    procs = [
        host.Proc(10, 1, ("systemd-nspawn", "--quiet", "--machine=kp-a-w0", "--boot")),
        host.Proc(11, 10, ("/usr/lib/systemd/systemd",)),
        host.Proc(20, 1, ("/usr/bin/systemd-nspawn", "--machine=kp-a-w1")),
        host.Proc(30, 1, ("sshd",)),
    ]
    assert host.nspawn_processes(procs) == {"kp-a-w0": (10, 11), "kp-a-w1": (20, None)}


MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
44 27 0:39 / /var/lib/with\\040space rw - overlay overlay rw
"""

PROC_CGROUP = """\
9:name=systemd:/
4:memory:/limits/abc
3:cpuset:/
2:cpu,cpuacct:/
0::/
"""


def test_machine_cgroup_dirs_are_below_our_own() -> None:
    dirs = host.machine_cgroup_dirs("kp-a-w0", PROC_CGROUP, MOUNTINFO)
    assert [str(d) for d in dirs] == [
        "/sys/fs/cgroup/systemd/kubeprem-lab/kp-a-w0",
        "/sys/fs/cgroup/memory/limits/abc/kubeprem-lab/kp-a-w0",
        "/sys/fs/cgroup/cpuset/kubeprem-lab/kp-a-w0",
        "/sys/fs/cgroup/cpu,cpuacct/kubeprem-lab/kp-a-w0",
        "/sys/fs/cgroup/unified/kubeprem-lab/kp-a-w0",
    ]


def test_mount_points_unescaped() -> None:
    assert "/var/lib/with space" in host.mount_points(MOUNTINFO)


def test_ensure_ssh_key(tmp_path: Path) -> None:
    key = tmp_path / "state" / "ssh" / "id_ed25519"
    assert ensure_ssh_key(key) == key
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    text = key.read_bytes()
    assert text.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    loaded = serialization.load_ssh_private_key(text, password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
    line = public_key_line(key)
    assert line.startswith("ssh-ed25519 ") and line.endswith(" kubeprem")
    # kept, not replaced, on a second call; a lost .pub is derived again
    key.with_name("id_ed25519.pub").unlink()
    ensure_ssh_key(key)
    assert key.read_bytes() == text
    assert public_key_line(key) == line
    assert not list(key.parent.glob(".*tmp*"))

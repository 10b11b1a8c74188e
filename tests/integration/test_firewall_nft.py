"""The rendered rulesets in the real nft, and in the kernel with real traffic.

Needs root, ``nft`` (Debian package nftables) and ``ip`` (iproute2). Every
machine's ruleset is checked with ``nft -c``; then a small network is built
from throwaway network namespaces only (nothing is added to the host's own
namespace): a bridge in a namespace of its own and one namespace per machine
with the site's addresses, joined by veth pairs created directly inside
the namespaces. Traffic goes only between these namespaces. Every namespace
is deleted afterwards, which also removes its veths, even when a test fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubeprem.components import firewall
from kubeprem.site import Site, example_text, parse_site

pytestmark = pytest.mark.integration

NFT = shutil.which("nft") or "/usr/sbin/nft"
IP = shutil.which("ip") or "/sbin/ip"
LISTINGS = Path(__file__).parent.parent / "golden" / "firewall" / "nft-list"

needs_root_nft = pytest.mark.skipif(
    os.geteuid() != 0 or not Path(NFT).exists() or not Path(IP).exists(),
    reason="needs root, nft (nftables) and ip (iproute2)",
)

NARROWED = """firewall:
  admin_networks: [192.168.10.0/24, "2001:db8:10::/48"]
  nodeport_networks: [198.51.100.0/24]
  monitoring_networks: [10.240.0.50/32]
  openings:
    - reason: node-exporter for the NOC
      ports: [9100, "9200-9210"]
      sources: [192.0.2.0/24, "2001:db8:99::/48"]
      roles: [worker]
"""


def example() -> Site:
    site, _ = parse_site(example_text(), "site.yaml")
    return site


def narrowed() -> Site:
    text = example_text().split("\nfirewall:\n", 1)[0] + "\n" + NARROWED
    site, _ = parse_site(text, "site.yaml")
    return site


def run(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


@needs_root_nft
@pytest.mark.parametrize("which", ["example", "narrowed"])
def test_every_ruleset_passes_nft_check(which: str, tmp_path: Path) -> None:
    site = example() if which == "example" else narrowed()
    for m in site.machines:
        path = tmp_path / f"{m.name}.nft"
        path.write_text(firewall.ruleset(site, m))
        argv = firewall.check_argv(str(path))
        argv[0] = NFT
        result = run(*argv, check=False)
        assert result.returncode == 0, f"{m.name}: {result.stderr}"


# -- a network of namespaces -------------------------------------------------

LISTENER = r"""
import socket, sys, threading
def serve(s):
    while True:
        c, _ = s.accept()
        c.sendall(b"ok")
        c.close()
for spec in sys.argv[1:]:
    host, port = spec.rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(16)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    print("open" if c.recv(2) == b"ok" else "odd")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print("error", exc)
"""


@dataclass
class Lab:
    """Namespaces named after machines; ``ns[name]`` is the namespace's real name."""

    prefix: str
    ns: dict[str, str] = field(default_factory=dict)
    listeners: list[subprocess.Popen[str]] = field(default_factory=list)

    def exec(self, name: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(IP, "netns", "exec", self.ns[name], *argv, check=check)

    def add(self, name: str, address: str | None, prefixlen: int = 24) -> None:
        real = f"{self.prefix}-{name}"
        run(IP, "netns", "add", real)
        self.ns[name] = real
        run(IP, "-n", real, "link", "set", "lo", "up")
        if address is None:
            return
        port = f"p{len(self.ns)}"
        # both ends are created inside namespaces: the host's own is never touched
        run(IP, "-n", self.ns["switch"], "link", "add", port, "type", "veth",
            "peer", "name", "eth0", "netns", real)  # fmt: skip
        run(IP, "-n", self.ns["switch"], "link", "set", port, "master", "br0", "up")
        run(IP, "-n", real, "address", "add", f"{address}/{prefixlen}", "dev", "eth0")
        run(IP, "-n", real, "link", "set", "eth0", "up")

    def load(self, name: str, ruleset: Path) -> None:
        self.exec(name, NFT, "-f", str(ruleset))

    def listen(self, name: str, *specs: str) -> None:
        proc = subprocess.Popen(
            [IP, "netns", "exec", self.ns[name], sys.executable, "-c", LISTENER, *specs],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.listeners.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"

    def connect(self, name: str, address: str, port: int, timeout: float = 1.0) -> str:
        out = self.exec(name, sys.executable, "-c", CLIENT, address, str(port), str(timeout))
        return out.stdout.strip()

    def close(self) -> None:
        for proc in self.listeners:
            proc.kill()
            proc.wait(timeout=10)
        for real in reversed(list(self.ns.values())):
            run(IP, "netns", "del", real, check=False)


@pytest.fixture
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0 or not Path(NFT).exists() or not Path(IP).exists():
        pytest.skip("needs root, nft (nftables) and ip (iproute2)")
    lab = Lab(prefix=f"kpfw{os.getpid() % 100000}")
    try:
        lab.add("switch", None)
        run(IP, "-n", lab.ns["switch"], "link", "add", "br0", "type", "bridge")
        run(IP, "-n", lab.ns["switch"], "link", "set", "br0", "up")
        yield lab
    finally:
        lab.close()
        left = run(IP, "netns", "list").stdout
        assert lab.prefix not in left, f"namespaces left behind: {left}"


def counter(lab: Lab, name: str, counter_name: str) -> int:
    out = lab.exec(name, NFT, "list", "counter", "inet", firewall.TABLE, counter_name).stdout
    m = re.search(r"packets (\d+)", out)
    assert m, out
    return int(m.group(1))


def normalise(listing: str) -> str:
    return re.sub(r"packets \d+ bytes \d+", "packets 0 bytes 0", listing)


def test_rules_let_controllers_in_and_keep_workers_out(lab: Lab, tmp_path: Path) -> None:
    site = example()
    addr = {m.name: str(m.address) for m in site.machines}
    for name in ("controller-0", "controller-1", "worker-0", "worker-1"):
        lab.add(name, addr[name])
        path = tmp_path / f"{name}.nft"
        path.write_text(firewall.ruleset(site, site.machine(name)))
        if name != "controller-1":  # one machine without rules, as a plain client
            lab.load(name, path)

    # what the kernel holds is what was rendered (compare with nft's own listing)
    for name in ("controller-0", "worker-0"):
        listing = lab.exec(name, NFT, "list", "table", "inet", firewall.TABLE).stdout
        assert normalise(listing) == (LISTINGS / f"{name}.txt").read_text()

    c0, w1 = addr["controller-0"], addr["worker-1"]
    lab.listen(
        "controller-0",
        f"{c0}:2379",
        f"{c0}:2380",
        f"{c0}:2381",
        f"{c0}:6443",
        f"{c0}:22",
        f"{c0}:9999",
    )
    lab.listen("worker-1", f"{w1}:10250", f"{w1}:22", f"{w1}:9100")

    before = counter(lab, "controller-0", firewall.INPUT_COUNTER)
    # etcd: a controller gets in, a worker does not (dropped: the connect times out)
    assert lab.connect("controller-1", c0, 2379) == "open"
    assert lab.connect("controller-1", c0, 2380) == "open"
    assert lab.connect("worker-0", c0, 2379) == "timeout"
    assert lab.connect("worker-0", c0, 2380) == "timeout"
    # etcd's metrics listener: open to the node subnet (Prometheus in a pod
    # arrives from its worker's address), the key-value port above is not
    assert lab.connect("worker-0", c0, 2381) == "open"
    # the API and SSH from the node subnet
    assert lab.connect("worker-0", c0, 6443) == "open"
    assert lab.connect("worker-0", c0, 22) == "open"
    # a port nobody opened, counted
    assert lab.connect("worker-0", c0, 9999) == "timeout"
    assert counter(lab, "controller-0", firewall.INPUT_COUNTER) >= before + 3

    # the kubelet: from a controller yes, from another worker no
    assert lab.connect("controller-1", w1, 10250) == "open"
    assert lab.connect("controller-0", w1, 10250) == "open"
    assert lab.connect("worker-0", w1, 10250) == "timeout"
    assert lab.connect("worker-0", w1, 22) == "open"
    # node exporter: metrics, open to the node subnet
    assert lab.connect("worker-0", w1, 9100) == "open"

    # ICMP passes
    if shutil.which("ping"):
        ping = lab.exec("worker-0", "ping", "-c", "1", "-W", "2", c0, check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr


def test_reload_replaces_only_our_table(lab: Lab, tmp_path: Path) -> None:
    site = example()
    lab.add("worker-0", str(site.machine("worker-0").address))
    # stand-ins for kube-proxy's iptables-nft rules and an operator's own table
    other = tmp_path / "other.nft"
    other.write_text(
        "table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority filter;"
        " policy accept;\n\t\ttcp dport 30001 counter reject\n\t}\n}\n"
        "table inet site-local {\n\tchain input {\n\t\ttype filter hook input priority 20;"
        " policy accept;\n\t}\n}\n"
    )
    lab.load("worker-0", other)
    path = tmp_path / "worker-0.nft"
    path.write_text(firewall.ruleset(site, site.machine("worker-0")))
    for _ in range(2):  # the second load swaps the table, no "exists" error
        lab.load("worker-0", path)
    tables = lab.exec("worker-0", NFT, "list", "tables").stdout.split("\n")
    assert sorted(t.strip() for t in tables if t.strip()) == [
        "table inet kubeprem",
        "table inet site-local",
        "table ip filter",
    ]
    assert "tcp dport 30001" in lab.exec("worker-0", NFT, "list", "table", "ip", "filter").stdout

    # disabling the firewall removes our table and nothing else
    off, _ = parse_site(
        example_text().replace("firewall:\n  enabled: true", "firewall:\n  enabled: false"),
        "site.yaml",
    )
    assert not off.firewall.enabled
    path.write_text(firewall.ruleset(off, off.machine("worker-0")))
    lab.load("worker-0", path)
    tables = lab.exec("worker-0", NFT, "list", "tables").stdout
    assert "inet kubeprem" not in tables and "ip filter" in tables


def test_security_check_reads_the_live_table(lab: Lab, tmp_path: Path) -> None:
    from kubeprem.security import evaluate, facts

    site = example()
    m = site.machine("worker-0")
    lab.add("worker-0", str(m.address))
    path = tmp_path / "worker-0.nft"
    path.write_text(firewall.ruleset(site, m))
    lab.load("worker-0", path)
    # the fact script itself, run inside the namespace: only the nft section matters here
    want = facts.Wanted((), (), (), (firewall.SERVICE,))
    out = lab.exec("worker-0", *facts.command(want)).stdout
    got = facts.parse("worker-0", out)
    results = {r.check.id: r for r in evaluate(got, site, m)}
    assert results["firewall.loaded"].status == "pass", results["firewall.loaded"].detail

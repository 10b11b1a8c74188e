"""Node firewall renderer: golden rulesets per role and the rules that matter.

Goldens: tests/golden/firewall/<case>/<machine>.nft and the unit file.
Regenerate with KUBEPREM_REGEN_GOLDEN=1 and review the diff. The rulesets
are also loaded by the real ``nft`` in tests/integration/test_firewall_nft.py.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Network, ip_network

import pytest

from kubeprem.components import firewall
from kubeprem.components.base import HostContext
from kubeprem.site import Site, example_text, parse_site

try:
    from tests.conftest import assert_golden
except ImportError:  # tests/ is not a package
    from conftest import assert_golden  # type: ignore[no-redef]

NARROWED = """firewall:
  admin_networks: [192.168.10.0/24, "2001:db8:10::/48"]
  nodeport_networks: [198.51.100.0/24]
  monitoring_networks: [10.240.0.50/32]
  openings:
    - reason: "node-exporter, scraped by the NOC's Prometheus"
      ports: [9100]
      sources: [192.0.2.0/24]
      roles: [worker]
    - reason: BigBlueButton media (WebRTC) on worker-1 only
      protocol: udp
      ports: ["16384-24576"]
      sources: [0.0.0.0/0]
      machines: [worker-1]
"""

ALL_IN_ONE = """
cluster:
  name: solo
  kubernetes_version: "1.20.2"
api:
  vip: 10.240.0.100
machines:
  - name: node-0
    address: 10.240.0.10
    roles: [etcd, control-plane, lb, worker]
"""


def without_firewall() -> str:
    """The example site up to its firewall section, for cases that bring their own."""
    return example_text().split("\nfirewall:\n", 1)[0] + "\n"


def site_from(text: str) -> Site:
    site, _ = parse_site(text, "site.yaml")
    return site


CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "example": (example_text(), ("controller-0", "worker-0")),
    "narrowed": (without_firewall() + NARROWED, ("controller-0", "worker-0", "worker-1")),
    "disabled": (without_firewall() + "\nfirewall:\n  enabled: false\n", ("worker-0",)),
    "all-in-one": (ALL_IN_ONE, ("node-0",)),
}


def rules(text: str) -> list[str]:
    """The ruleset's statements, without comments and blank lines."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def chain(text: str, name: str) -> list[str]:
    body = text.split(f"\tchain {name} {{\n", 1)[1].split("\n\t}", 1)[0]
    return rules(body)


# -- golden files ------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    text, machines = CASES[case]
    site = site_from(text)
    for name in machines:
        rendered = firewall.render(HostContext(site, site.machine(name)))
        assert rendered.component == "firewall"
        assert rendered.services == (firewall.SERVICE,)
        files = {f.path: f for f in rendered.files}
        assert set(files) == {firewall.RULESET, f"/etc/systemd/system/{firewall.SERVICE}"}
        assert all(f.mode == 0o644 and not f.secret for f in files.values())
        assert_golden(f"firewall/{case}/{name}.nft", files[firewall.RULESET].content.decode())
    unit = firewall.unit_text()
    assert_golden("firewall/kubeprem-firewall.service", unit)


# -- the table and its loading --------------------------------------------


def test_replaces_only_our_table(example_site: Site) -> None:
    for m in example_site.machines:
        text = firewall.ruleset(example_site, m)
        statements = rules(text)
        # create-then-delete makes the delete safe on a first load; both
        # precede the new table, so nft -f swaps it in one transaction
        assert statements[:3] == [
            "table inet kubeprem",
            "delete table inet kubeprem",
            "table inet kubeprem {",
        ]
        assert "flush ruleset" not in text
        assert not re.search(r"^\s*(flush|delete) table (?!inet kubeprem$)", text, re.M)
        assert "hook forward" not in text and "hook output" not in text


def test_unit_loads_before_network_and_never_opens_a_gap() -> None:
    unit = firewall.unit_text()
    assert "ExecStart=/usr/sbin/nft -f /etc/kubeprem/firewall.nft" in unit
    assert "Type=oneshot" in unit and "RemainAfterExit=yes" in unit
    assert "Before=network-pre.target" in unit and "DefaultDependencies=no" in unit
    # a restart re-runs ExecStart, which swaps the table atomically; an
    # ExecStop deleting it would leave the machine open in between
    assert "ExecStop" not in unit


def test_input_chain_policy_and_order(example_site: Site) -> None:
    text = firewall.ruleset(example_site, example_site.machine("worker-0"))
    body = chain(text, "input")
    assert body[0] == "type filter hook input priority filter + 10; policy drop;"
    assert body[1:4] == [
        "ct state established,related accept",
        "ct state invalid drop",
        'iif "lo" accept',
    ]
    assert "meta l4proto { 1, 58 } accept" in body
    assert body[-1] == 'counter name "input_dropped" drop'
    # guards come before the broad accepts for pods and the CNI bridge
    kubelet_drop = body.index('tcp dport 10250 counter name "input_dropped" drop')
    assert kubelet_drop < body.index("ip saddr @cluster_v4 accept")
    assert kubelet_drop < body.index('iifname "cnio0" accept')


def set_elements(text: str, name: str) -> set[str]:
    m = re.search(rf"set {name} {{.*?elements = {{ (.*?) }}", text, re.S)
    assert m, f"no set {name}"
    return set(m.group(1).split(", "))


def test_etcd_only_from_etcd_and_control_plane(example_site: Site) -> None:
    text = firewall.ruleset(example_site, example_site.machine("controller-1"))
    assert set_elements(text, "etcd_v4") == {"10.240.0.10", "10.240.0.11", "10.240.0.12"}
    body = chain(text, "input")
    assert "ip saddr @etcd_v4 tcp dport 2379-2380 accept" in body
    assert 'tcp dport 2379-2380 counter name "input_dropped" drop' in body
    worker = firewall.ruleset(example_site, example_site.machine("worker-0"))
    assert "2379" not in worker  # no etcd there: nothing to open


def test_api_ports_from_node_subnet_pods_and_admin(example_site: Site) -> None:
    text = firewall.ruleset(example_site, example_site.machine("controller-0"))
    body = chain(text, "input")
    assert "ip saddr @kube_apiserver_v4 tcp dport 6443 accept" in body
    assert "ip saddr @api_vip_v4 tcp dport 8443 accept" in body
    # the default admin networks are anywhere, which swallows the subnets
    assert set_elements(text, "kube_apiserver_v4") == {"0.0.0.0/0"}
    narrowed = site_from(without_firewall() + NARROWED)
    text = firewall.ruleset(narrowed, narrowed.machine("controller-0"))
    assert set_elements(text, "api_vip_v4") == {
        "10.200.0.0/16",
        "10.240.0.0/24",
        "192.168.10.0/24",
    }
    assert set_elements(text, "api_vip_v6") == {"2001:db8:10::/48"}


def test_kubelet_from_controllers_and_monitoring() -> None:
    site = site_from(without_firewall() + NARROWED)
    text = firewall.ruleset(site, site.machine("worker-2"))
    assert set_elements(text, "kubelet_v4") == {
        "10.240.0.10",
        "10.240.0.11",
        "10.240.0.12",
        "10.240.0.50",
    }


def test_vrrp_only_between_lb_machines(example_site: Site) -> None:
    text = firewall.ruleset(example_site, example_site.machine("controller-0"))
    assert set_elements(text, "vrrp_v4") == {"10.240.0.11", "10.240.0.12"}
    body = chain(text, "input")
    assert "ip saddr @vrrp_v4 ip protocol 112 accept" in body
    assert 'ip protocol 112 counter name "input_dropped" drop' in body
    assert "112" not in firewall.ruleset(example_site, example_site.machine("worker-0"))


def test_nodeports_checked_before_dnat(example_site: Site) -> None:
    text = firewall.ruleset(example_site, example_site.machine("worker-0"))
    pre = chain(text, "prerouting")
    assert pre[0] == "type filter hook prerouting priority mangle; policy accept;"
    assert pre[1] == "ct state established,related accept"
    assert pre[-1] == (
        "meta l4proto { 6, 17 } th dport 30000-32767 fib daddr type local jump nodeports"
    )
    assert chain(text, "nodeports") == [
        "ip saddr @nodeports_v4 accept",
        'counter name "nodeport_dropped" drop',
    ]
    assert set_elements(text, "nodeports_v4") == {"10.200.0.0/16", "10.240.0.0/24"}
    # controllers run no kube-proxy: no NodePorts, no prerouting chain
    assert "prerouting" not in firewall.ruleset(example_site, example_site.machine("controller-0"))


def test_ssh_port_per_machine() -> None:
    text = example_text().replace(
        "    address: 10.240.0.20\n",
        "    address: 10.240.0.20\n    ssh:\n      port: 2222\n",
    )
    site = site_from(text)
    assert "tcp dport 2222 accept" in firewall.ruleset(site, site.machine("worker-0"))
    assert "tcp dport 22 accept" in firewall.ruleset(site, site.machine("worker-1"))


def test_openings_carry_their_reason_and_reach_only_their_machines() -> None:
    site = site_from(without_firewall() + NARROWED)
    w0 = firewall.ruleset(site, site.machine("worker-0"))
    w1 = firewall.ruleset(site, site.machine("worker-1"))
    c0 = firewall.ruleset(site, site.machine("controller-0"))
    assert "# node-exporter, scraped by the NOC's Prometheus" in w0
    assert (
        'ip saddr { 192.0.2.0/24 } tcp dport 9100 accept comment "node-exporter, scraped by '
        'the NOC s Prometheus"' in w0
    )
    assert "node-exporter, scraped by" not in c0
    assert "192.0.2.0/24" not in c0
    assert "udp dport 16384-24576" in w1 and "16384" not in w0


def test_comment_text_is_sanitised() -> None:
    assert firewall._comment('say "hi"; drop\nall') == "say hi ; drop all"
    assert len(firewall._comment("x" * 500)) == 120
    assert firewall._line("one\ntwo\r\x00three") == "one two three"


def test_sets_never_overlap() -> None:
    nets = [ip_network("10.0.0.0/8"), ip_network("10.1.0.0/16"), ip_network("10.0.0.5/32")]
    v4 = [n for n in nets if isinstance(n, IPv4Network)]
    assert firewall.merge(v4) == [IPv4Network("10.0.0.0/8")]
    adjacent = [IPv4Network("10.240.0.11/32"), IPv4Network("10.240.0.10/32")]
    assert firewall.merge(adjacent) == sorted(adjacent)


def test_disabled_only_removes_our_table() -> None:
    site = site_from(without_firewall() + "\nfirewall:\n  enabled: false\n")
    assert rules(firewall.ruleset(site, site.machine("worker-0"))) == [
        "table inet kubeprem",
        "delete table inet kubeprem",
    ]


def test_policy_is_data(example_site: Site) -> None:
    names = [a.name for a in firewall.policy(example_site, example_site.machine("controller-0"))]
    assert names == [
        "ssh",
        "etcd",
        "etcd-metrics",
        "kube-apiserver",
        "api-vip",
        "vrrp",
        "metrics",
        "cluster",
    ]
    names = [a.name for a in firewall.policy(example_site, example_site.machine("worker-0"))]
    assert names == ["ssh", "kubelet", "nodeports", "metrics", "cluster"]
    guarded = firewall.guarded_ports(example_site, example_site.machine("worker-0"))
    assert ("kubelet", "tcp", (10250, 10250)) in guarded
    assert ("nodeports", "udp", (30000, 32767)) in guarded
    guarded = firewall.guarded_ports(example_site, example_site.machine("controller-0"))
    assert ("etcd", "tcp", (2379, 2380)) in guarded
    assert ("etcd-metrics", "tcp", (2381, 2381)) in guarded


def test_monitoring_reaches_metrics_but_not_etcd_or_kubelets() -> None:
    """Prometheus's scrapes arrive from a worker's address (the CNI
    masquerades pod traffic that leaves its node): etcd's metrics listener
    and node exporter let the node subnet in, the key-value port and the
    kubelets do not; only firewall.monitoring_networks widens the kubelets."""
    site = site_from(without_firewall() + NARROWED)
    worker = IPv4Network("10.240.0.21/32")

    def allows(machine: str, port: int, source: IPv4Network) -> bool:
        """The first rule for this TCP port decides (guarded ones drop the rest)."""
        for a in firewall.policy(site, site.machine(machine)):
            if "tcp" in a.protocols and any(lo <= port <= hi for lo, hi in a.ports):
                return any(source.subnet_of(s) for s in a.v4())
        return False

    assert allows("controller-0", 2381, worker)
    assert not allows("controller-0", 2379, worker)
    assert allows("controller-0", 2379, IPv4Network("10.240.0.11/32"))
    assert allows("worker-0", 9100, worker)
    assert allows("controller-0", 9100, worker)
    assert not allows("worker-0", 10250, worker)
    assert allows("worker-0", 10250, IPv4Network("10.240.0.50/32"))  # monitoring_networks
    assert allows("controller-0", 2381, IPv4Network("10.240.0.50/32"))
    assert not allows("controller-0", 2381, IPv4Network("192.0.2.1/32"))


def test_rollback_commands() -> None:
    assert firewall.arm_rollback_argv(60) == [
        "systemd-run",
        "--unit=kubeprem-firewall-rollback",
        "--on-active=60",
        "--timer-property=AccuracySec=1s",
        "/usr/sbin/nft",
        "delete",
        "table",
        "inet",
        "kubeprem",
    ]
    assert firewall.disarm_rollback_argv() == [
        "systemctl",
        "stop",
        "kubeprem-firewall-rollback.timer",
    ]
    assert firewall.check_argv() == ["/usr/sbin/nft", "-c", "-f", "/etc/kubeprem/firewall.nft"]

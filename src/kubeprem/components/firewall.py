"""The node firewall: nftables rules per machine, from its roles and the site.

Called by the render command and the plan for every machine (``BY_ROLE``
role ``None``). Pure: ``render(ctx) -> Rendered`` with the ruleset file
and the oneshot unit that loads it at boot; ``policy(site, machine)`` is the
same decision as data (what is open, to whom, why), for documentation,
tests and the security checks.

Decisions (docs/firewall.md has the reasoning at length):

- One table of our own, ``inet kubeprem``, replaced atomically by
  ``nft -f`` with the ``table`` + ``delete table`` idiom; no other table is
  flushed. kube-proxy and the CNI plugins write iptables rules (on Debian 12
  iptables is iptables-nft: tables ``ip filter``, ``ip nat``, ...); a packet
  passes only if every base chain on its hook accepts it, so ours can only
  narrow what they allow, never undo their NAT or their rejects.
- Only traffic *to the machine* is filtered (hook ``input``, policy drop,
  after iptables' own INPUT chain). Forwarded traffic (pods, Services after
  DNAT, NodePorts to pods) is left to kube-proxy, the CNI plugins and
  NetworkPolicy: filtering FORWARD by port would break Services.
- NodePorts are DNATed before ``input`` sees them, so their sources are
  checked earlier, in a ``prerouting`` chain at mangle priority (before
  kube-proxy's DNAT at -100) that drops only new connections to a local
  address in the NodePort range from anywhere else.
- Node services are *guarded*: each is accepted from its own sources and
  then dropped, before the broad rules (pods, the CNI bridge, extra
  openings) run. So a pod on an etcd machine cannot reach etcd, and no
  opening can widen a guarded port (the site checks reject such openings).
- Everything dropped on purpose is counted in the named counters
  ``input_dropped`` and ``nodeport_dropped``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Literal, TypeVar

from kubeprem.components import cni, etcd
from kubeprem.components.base import File, HostContext, Rendered
from kubeprem.components.paths import UNIT_DIR
from kubeprem.components.systemd import quote_arg
from kubeprem.site.model import Machine, Role, Site

COMPONENT = "firewall"
SERVICE = "kubeprem-firewall.service"
RULESET = "/etc/kubeprem/firewall.nft"
NFT = "/usr/sbin/nft"
FAMILY = "inet"
TABLE = "kubeprem"
INPUT_COUNTER = "input_dropped"
NODEPORT_COUNTER = "nodeport_dropped"
# Priorities: iptables-nft's filter INPUT is at 0; ours runs after it, so
# kube-proxy's rejects (Services without endpoints) still answer first.
INPUT_PRIORITY = "filter + 10"
# Before kube-proxy's DNAT (nat PREROUTING at -100), after conntrack (-200).
PREROUTING_PRIORITY = "mangle"
# kube-apiserver's default --service-node-port-range, which kubeprem keeps.
NODEPORT_RANGE = (30000, 32767)
KUBELET_PORT = 10250
# Metrics endpoints Prometheus scrapes on the machines (docs/monitoring.md),
# by the role that serves them. Prometheus runs in a pod, and pod traffic to
# another machine leaves masqueraded to its node's address, so these accept
# the node subnet as well as the pod CIDR. Not guarded: they serve metrics
# only, and an opening may add a monitoring system of the site's own.
# (etcd's metrics listener is guarded: see "etcd-metrics" in ``policy``.)
NODE_EXPORTER_PORT = 9100  # every machine: DaemonSet on nodes, Debian's service elsewhere
METRICS_PORTS: dict[Role, tuple[int, ...]] = {
    "control-plane": (10257, 10259),  # kube-controller-manager, kube-scheduler
    "worker": (10249,),  # kube-proxy
    "lb": (8405,),  # HAProxy's Prometheus exporter frontend
}
VRRP_PROTOCOL = 112
# IP protocols by number: nft resolves names through /etc/protocols, which a
# minimal Debian (no netbase) lacks. 1 icmp, 6 tcp, 17 udp, 58 ipv6-icmp.
L4_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58}
# The rollback timer the apply workflow arms before loading new rules.
ROLLBACK_UNIT = "kubeprem-firewall-rollback"

Network = IPv4Network | IPv6Network
N = TypeVar("N", IPv4Network, IPv6Network)
Protocol = Literal["tcp", "udp", "vrrp"]


@dataclass(frozen=True)
class Allow:
    """One opening of the machine: who may reach what, and why.

    ``guarded``: the port is closed to everyone else, whatever later rules
    (pods, the CNI bridge, extra openings) would allow.
    """

    name: str
    protocols: tuple[Protocol, ...]
    ports: tuple[tuple[int, int], ...]  # (low, high); empty for VRRP
    sources: tuple[Network, ...]
    reason: str
    guarded: bool = True

    def v4(self) -> list[IPv4Network]:
        return merge(s for s in self.sources if isinstance(s, IPv4Network))

    def v6(self) -> list[IPv6Network]:
        return merge(s for s in self.sources if isinstance(s, IPv6Network))


def merge(networks: Iterable[N]) -> list[N]:
    """Sorted, and without networks inside others: nft interval sets refuse
    overlaps. Neighbours stay apart so that machines remain recognisable."""
    unique = sorted(set(networks))
    return [n for n in unique if not any(o != n and n.subnet_of(o) for o in unique)]


def _hosts(machines: Iterable[Machine]) -> tuple[Network, ...]:
    return tuple(ip_network(m.address) for m in machines)


def ssh_port(site: Site, machine: Machine) -> int:
    return machine.ssh.port or site.ssh.port


def policy(site: Site, machine: Machine) -> list[Allow]:
    """What this machine accepts besides replies, loopback and ICMP, in rule order."""
    fw = site.firewall
    nw = site.network
    admin = tuple(fw.admin_networks)
    out = [
        Allow(
            "ssh",
            ("tcp",),
            ((ssh_port(site, machine),) * 2,),
            admin,
            "SSH from firewall.admin_networks (kubeprem itself connects this way)",
        )
    ]
    if machine.has("etcd"):
        out.append(
            Allow(
                "etcd",
                ("tcp",),
                ((etcd.CLIENT_PORT, etcd.PEER_PORT),),
                _hosts(site.etcd_members + site.controllers),
                "etcd clients and peers: the etcd and control-plane machines only",
            )
        )
    monitoring = (nw.node_cidr, nw.pod_cidr, *fw.monitoring_networks)
    if machine.has("etcd"):
        # metrics and health only (a listener of its own, client-certificate
        # TLS): Prometheus in a pod arrives from its node's address
        out.append(
            Allow(
                "etcd-metrics",
                ("tcp",),
                ((etcd.METRICS_PORT, etcd.METRICS_PORT),),
                monitoring,
                "etcd metrics (not the key-value port) from the node subnet, pods and "
                "firewall.monitoring_networks",
            )
        )
    api_sources = (nw.node_cidr, nw.pod_cidr, *admin)
    if machine.has("control-plane"):
        port = site.api.apiserver_port
        out.append(
            Allow(
                "kube-apiserver",
                ("tcp",),
                ((port, port),),
                api_sources,
                "kube-apiserver from the node subnet, pods and firewall.admin_networks",
            )
        )
    if machine.has("lb") and not (
        machine.has("control-plane") and site.api.port == site.api.apiserver_port
    ):
        out.append(
            Allow(
                "api-vip",
                ("tcp",),
                ((site.api.port, site.api.port),),
                api_sources,
                "the API on the virtual IP (HAProxy) from the node subnet, pods and "
                "firewall.admin_networks",
            )
        )
    if machine.has("lb"):
        peers = [m for m in site.load_balancers if m.name != machine.name]
        out.append(
            Allow(
                "vrrp",
                ("vrrp",),
                (),
                _hosts(peers),
                "VRRP adverts (keepalived) from the other lb machines",
            )
        )
    if machine.has("worker"):
        out.append(
            Allow(
                "kubelet",
                ("tcp",),
                ((KUBELET_PORT, KUBELET_PORT),),
                (*_hosts(site.controllers), *fw.monitoring_networks),
                "the kubelet API from the control-plane machines and firewall.monitoring_networks",
            )
        )
        out.append(
            Allow(
                "nodeports",
                ("tcp", "udp"),
                (NODEPORT_RANGE,),
                nodeport_sources(site),
                "NodePort Services from the node subnet, pods and firewall.nodeport_networks",
            )
        )
    out.append(
        Allow(
            "metrics",
            ("tcp",),
            tuple((p, p) for p in metrics_ports(machine)),
            monitoring,
            "metrics endpoints (node exporter and the machine's components) from the node "
            "subnet, pods and firewall.monitoring_networks",
            guarded=False,
        )
    )
    out.append(
        Allow(
            "cluster",
            (),
            (),
            (nw.pod_cidr, nw.service_cidr),
            "pods and Service addresses, to any port not guarded above",
            guarded=False,
        )
    )
    for i, opening in enumerate(fw.openings):
        if opening.applies_to(machine):
            out.append(
                Allow(
                    f"opening-{i}",
                    (opening.protocol,),
                    tuple(opening.port_ranges()),
                    tuple(opening.sources),
                    opening.reason,
                    guarded=False,
                )
            )
    return out


def metrics_ports(machine: Machine) -> list[int]:
    """The metrics ports of this machine's roles, sorted."""
    ports = {NODE_EXPORTER_PORT}
    for role, numbers in METRICS_PORTS.items():
        if machine.has(role):
            ports.update(numbers)
    return sorted(ports)


def nodeport_sources(site: Site) -> tuple[Network, ...]:
    nw = site.network
    return (nw.node_cidr, nw.pod_cidr, *site.firewall.nodeport_networks)


def guarded_ports(site: Site, machine: Machine) -> list[tuple[str, str, tuple[int, int]]]:
    """(name, protocol, port range) of every guarded port: an opening may not touch them."""
    out: list[tuple[str, str, tuple[int, int]]] = []
    for allow in policy(site, machine):
        if allow.guarded:
            for proto in allow.protocols:
                if proto != "vrrp":
                    out += [(allow.name, proto, r) for r in allow.ports]
    return out


# -- rendering -------------------------------------------------------------


def _ports(ranges: Sequence[tuple[int, int]]) -> str:
    items = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _elements(nets: Sequence[Network]) -> str:
    return ", ".join(str(n.network_address) if n.num_addresses == 1 else str(n) for n in nets)


def _match(allow: Allow) -> str:
    """The protocol-and-port part of a rule, '' for 'any'."""
    protos = [p for p in allow.protocols if p != "vrrp"]
    if "vrrp" in allow.protocols:
        return f"ip protocol {VRRP_PROTOCOL}"
    if not protos:
        return ""
    if len(protos) == 1:
        return f"{protos[0]} dport {_ports(allow.ports)}"
    numbers = ", ".join(str(L4_NUMBERS[p]) for p in protos)
    return "meta l4proto { " + numbers + " } th dport " + _ports(allow.ports)


def _set_name(allow: Allow, family: str) -> str:
    return f"{allow.name.replace('-', '_')}_{family}"


def _comment(text: str) -> str:
    """Text safe for an nft comment string: one line, no quotes, at most 120 bytes."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;/()_+=@-")
    clean = "".join(c if c in allowed else " " for c in text)
    return " ".join(clean.split())[:120].rstrip()


def _line(text: str) -> str:
    """Text safe for a ``#`` comment line."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


@dataclass(frozen=True)
class _Parts:
    sets: list[str]
    input_rules: list[str]
    prerouting: list[str]
    nodeport_rules: list[str]


def _set_block(name: str, kind: str, nets: Sequence[Network]) -> str:
    return "\n".join(
        [
            f"\tset {name} {{",
            f"\t\ttype {kind}",
            "\t\tflags interval",
            f"\t\telements = {{ {_elements(nets)} }}",
            "\t}",
        ]
    )


def _parts(site: Site, machine: Machine) -> _Parts:
    sets: list[str] = []
    rules: list[str] = []
    nodeport: list[str] = []
    worker = machine.has("worker")
    for allow in policy(site, machine):
        match = _match(allow)
        head = f"{match} " if match else ""
        if allow.name.startswith("opening-"):
            rules.append(f"# {_line(allow.reason)}")
            comment = f' comment "{_comment(allow.reason)}"'
        else:
            rules.append(f"# {allow.reason}")
            comment = ""
        v4, v6 = allow.v4(), allow.v6()
        named = not allow.name.startswith("opening-")
        for fam, kind, key, nets in (
            ("v4", "ipv4_addr", "ip saddr", v4),
            ("v6", "ipv6_addr", "ip6 saddr", v6),
        ):
            if not nets:
                continue
            if named:
                name = _set_name(allow, fam)
                sets.append(_set_block(name, kind, nets))
                source = f"@{name}"
            else:
                source = "{ " + _elements(nets) + " }"
            rules.append(f"{key} {source} {head}accept{comment}")
        if allow.guarded:
            rules.append(f'{head}counter name "{INPUT_COUNTER}" drop')
        if allow.name == "nodeports":
            nodeport = [
                f"{key} @{_set_name(allow, fam)} accept"
                for fam, key, nets in (("v4", "ip saddr", v4), ("v6", "ip6 saddr", v6))
                if nets
            ]
            nodeport.append(f'counter name "{NODEPORT_COUNTER}" drop')
        if allow.name == "cluster" and worker:
            rules.append(f"# pods on this machine, through the CNI bridge {cni.BRIDGE}")
            rules.append(f'iifname "{cni.BRIDGE}" accept')
    prerouting: list[str] = []
    if worker:
        lo, hi = NODEPORT_RANGE
        prerouting = [
            "ct state established,related accept",
            'iif "lo" accept',
            f'iifname "{cni.BRIDGE}" accept',
            f"meta l4proto {{ 6, 17 }} th dport {lo}-{hi} fib daddr type local jump nodeports",
        ]
    return _Parts(sets, rules, prerouting, nodeport)


def _header(site: Site, machine: Machine) -> list[str]:
    return [
        "#!/usr/sbin/nft -f",
        f"# Node firewall of {machine.name} (roles: {', '.join(machine.roles)}),",
        "# rendered by kubeprem; changes here are overwritten.",
        f"# Loaded by {SERVICE}. Only the table {FAMILY} {TABLE} is replaced, in one",
        "# transaction: other tables (kube-proxy's and the CNI plugins' iptables-nft",
        "# rules, anything else) are left alone. Forwarded traffic (pods) is not",
        "# filtered here.",
        "",
        "# Create the table if it is missing, so that deleting it never fails.",
        f"table {FAMILY} {TABLE}",
        f"delete table {FAMILY} {TABLE}",
        "",
    ]


def ruleset(site: Site, machine: Machine) -> str:
    """The nft file for one machine. With the firewall disabled it only removes our table."""
    lines = _header(site, machine)
    if not site.firewall.enabled:
        lines += ["# firewall.enabled is false in the site file: no table is loaded.", ""]
        return "\n".join(lines)
    parts = _parts(site, machine)
    body = [f"table {FAMILY} {TABLE} {{"]
    for block in parts.sets:
        body += [block, ""]
    body += [f"\tcounter {INPUT_COUNTER} {{", "\t}", ""]
    if parts.prerouting:
        body += [f"\tcounter {NODEPORT_COUNTER} {{", "\t}", ""]
    body += [
        "\tchain input {",
        f"\t\ttype filter hook input priority {INPUT_PRIORITY}; policy drop;",
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
        '\t\tiif "lo" accept',
        "\t\t# ICMP and ICMPv6 (neighbour discovery, path MTU: IPv6 breaks without it)",
        "\t\tmeta l4proto { 1, 58 } accept",
        "\t\t# DHCPv6 replies to this machine's own client",
        "\t\tip6 saddr fe80::/10 udp dport 546 accept",
    ]
    body += [f"\t\t{r}" for r in parts.input_rules]
    body += ["\t\t# everything else", f'\t\tcounter name "{INPUT_COUNTER}" drop', "\t}"]
    if parts.prerouting:
        body += [
            "",
            "\t# NodePorts are DNATed to pods before the input hook: check their",
            "\t# sources here, before kube-proxy's DNAT.",
            "\tchain prerouting {",
            f"\t\ttype filter hook prerouting priority {PREROUTING_PRIORITY}; policy accept;",
            *[f"\t\t{r}" for r in parts.prerouting],
            "\t}",
            "",
            "\tchain nodeports {",
            *[f"\t\t{r}" for r in parts.nodeport_rules],
            "\t}",
        ]
    body.append("}")
    return "\n".join(lines + body) + "\n"


def unit_text() -> str:
    """The oneshot unit: load the rules before the network comes up.

    Written here rather than with ``systemd.unit()``: a firewall must be in
    place before ``network-pre.target``, which needs ``DefaultDependencies=no``
    and ``Before=`` lines that helper does not offer. Arguments are still
    quoted by ``systemd.quote_arg``. No ``ExecStop``: restarting the unit (what
    apply does when the rules change) then swaps the table in one
    transaction, with no moment without rules.
    """
    load = " ".join(quote_arg(a) for a in (NFT, "-f", RULESET))
    return "\n".join(
        [
            "[Unit]",
            "Description=kubeprem node firewall (nftables table inet kubeprem)",
            f"Documentation=file:{RULESET}",
            "DefaultDependencies=no",
            "Wants=network-pre.target",
            "Before=network-pre.target shutdown.target",
            "Conflicts=shutdown.target",
            "",
            "[Service]",
            "Type=oneshot",
            "RemainAfterExit=yes",
            f"ExecStart={load}",
            f"ExecReload={load}",
            "",
            "[Install]",
            "WantedBy=sysinit.target",
            "",
        ]
    )


def render(ctx: HostContext) -> Rendered:
    return Rendered(
        COMPONENT,
        (
            File.text(RULESET, ruleset(ctx.site, ctx.machine)),
            File.text(f"{UNIT_DIR}/{SERVICE}", unit_text()),
        ),
        services=(SERVICE,),
    )


# -- applying without locking ourselves out -------------------------------


def arm_rollback_argv(seconds: int) -> list[str]:
    """A transient timer that removes our table unless disarmed in time.

    The apply workflow runs this before restarting the firewall unit, then
    opens a *new* SSH connection (an existing one is let through as
    established, which proves nothing) and disarms the timer.
    """
    return [
        "systemd-run",
        f"--unit={ROLLBACK_UNIT}",
        f"--on-active={int(seconds)}",
        "--timer-property=AccuracySec=1s",
        NFT,
        "delete",
        "table",
        FAMILY,
        TABLE,
    ]


def disarm_rollback_argv() -> list[str]:
    return ["systemctl", "stop", f"{ROLLBACK_UNIT}.timer"]


def check_argv(path: str = RULESET) -> list[str]:
    """Check a ruleset file without loading it (``nft -c``)."""
    return [NFT, "-c", "-f", path]


__all__ = [
    "COMPONENT",
    "FAMILY",
    "INPUT_COUNTER",
    "NODEPORT_COUNTER",
    "NODEPORT_RANGE",
    "RULESET",
    "SERVICE",
    "TABLE",
    "Allow",
    "arm_rollback_argv",
    "check_argv",
    "disarm_rollback_argv",
    "guarded_ports",
    "policy",
    "render",
    "ruleset",
    "unit_text",
]

"""Checks across fields of a site: the mistakes a schema cannot see.

Pure: takes a ``Site``, returns problems as (path in the file, points at a
key, message). ``kubeprem.site.load`` turns the paths into file:line:column.
Each message says what is wrong and what to do.
"""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Network

from kubeprem.components.versions import SUPPORTED, supported_text
from kubeprem.site.model import Machine, Opening, Site, pod_subnet_count

Problem = tuple[tuple[str | int, ...], bool, str]


def check_site(site: Site) -> list[Problem]:
    out: list[Problem] = []
    out += _check_version(site)
    out += _check_machines(site)
    out += _check_roles(site)
    out += _check_networks(site)
    out += _check_api(site)
    out += _check_firewall(site)
    return out


def _check_version(site: Site) -> list[Problem]:
    if site.cluster.minor not in SUPPORTED:
        return [
            (
                ("cluster", "kubernetes_version"),
                False,
                f"Kubernetes {site.cluster.version} is not supported; use {supported_text()}",
            )
        ]
    return []


def _check_machines(site: Site) -> list[Problem]:
    out: list[Problem] = []
    names = Counter(m.name for m in site.machines)
    addrs = Counter(m.address for m in site.machines)
    seen_names: set[str] = set()
    seen_addrs: set[object] = set()
    net = site.network.node_cidr
    for i, m in enumerate(site.machines):
        if names[m.name] > 1 and m.name in seen_names:
            out.append(
                (
                    ("machines", i, "name"),
                    False,
                    f"machine name '{m.name}' is used twice; names must be unique",
                )
            )
        seen_names.add(m.name)
        if addrs[m.address] > 1 and m.address in seen_addrs:
            out.append(
                (
                    ("machines", i, "address"),
                    False,
                    f"address {m.address} is used by more than one machine; give each its own",
                )
            )
        seen_addrs.add(m.address)
        if m.address not in net:
            out.append(
                (
                    ("machines", i, "address"),
                    False,
                    f"address {m.address} of '{m.name}' is outside the node subnet "
                    f"{net}; change the address or network.node_cidr",
                )
            )
        elif m.address in (net.network_address, net.broadcast_address):
            out.append(
                (
                    ("machines", i, "address"),
                    False,
                    f"address {m.address} is the network or broadcast address of {net}",
                )
            )
        dup_roles = [r for r, n in Counter(m.roles).items() if n > 1]
        if dup_roles:
            out.append(
                (
                    ("machines", i, "roles"),
                    False,
                    f"role '{dup_roles[0]}' is listed twice for '{m.name}'",
                )
            )
        if m.pod_cidr is not None and not m.has("worker"):
            out.append(
                (
                    ("machines", i, "pod_cidr"),
                    True,
                    f"'{m.name}' has a pod_cidr but no worker role; only workers run pods",
                )
            )
    return out


def _check_roles(site: Site) -> list[Problem]:
    out: list[Problem] = []
    n_etcd = len(site.etcd_members)
    if n_etcd == 0:
        out.append(
            (("machines",), True, "no machine has the role 'etcd'; give it to 1, 3 or 5 machines")
        )
    elif n_etcd % 2 == 0:
        out.append(
            (
                ("machines",),
                True,
                f"{n_etcd} machines have the role 'etcd'; an even number tolerates no more "
                f"failures than {n_etcd - 1} and risks split votes: "
                f"use {n_etcd - 1} or {n_etcd + 1}",
            )
        )
    if not site.controllers:
        out.append(
            (
                ("machines",),
                True,
                "no machine has the role 'control-plane'; give it to at least one (three for HA)",
            )
        )
    if not site.workers:
        out.append(
            (("machines",), True, "no machine has the role 'worker'; pods need at least one")
        )
    if not site.load_balancers:
        out.append(
            (
                ("machines",),
                True,
                "no machine has the role 'lb'; the API's virtual IP needs HAProxy and "
                "keepalived on at least one machine (usually the control-plane machines)",
            )
        )
    return out


def _check_networks(site: Site) -> list[Problem]:
    out: list[Problem] = []
    nw = site.network
    named: list[tuple[str, IPv4Network]] = [
        ("node_cidr", nw.node_cidr),
        ("pod_cidr", nw.pod_cidr),
        ("service_cidr", nw.service_cidr),
    ]
    for i, (a_name, a) in enumerate(named):
        for b_name, b in named[i + 1 :]:
            if a.overlaps(b):
                out.append(
                    (
                        ("network", b_name),
                        False,
                        f"network.{b_name} {b} overlaps network.{a_name} {a}; "
                        "node, pod and service ranges must be disjoint",
                    )
                )
    if nw.cluster_dns not in nw.service_cidr:
        out.append(
            (
                ("network", "cluster_dns"),
                False,
                f"cluster_dns {nw.cluster_dns} is outside service_cidr {nw.service_cidr}",
            )
        )
    elif nw.cluster_dns == nw.kubernetes_service_ip:
        out.append(
            (
                ("network", "cluster_dns"),
                False,
                f"cluster_dns {nw.cluster_dns} is the address the 'kubernetes' Service takes; "
                "use another one, e.g. the tenth",
            )
        )
    if nw.node_pod_prefix < nw.pod_cidr.prefixlen:
        out.append(
            (
                ("network", "node_pod_prefix"),
                False,
                f"node_pod_prefix /{nw.node_pod_prefix} is larger than pod_cidr {nw.pod_cidr}",
            )
        )
        return out
    available = pod_subnet_count(nw)
    workers = site.workers
    if len(workers) > available:
        out.append(
            (
                ("network", "pod_cidr"),
                False,
                f"pod_cidr {nw.pod_cidr} holds {available} /{nw.node_pod_prefix} node "
                f"subnets but {len(workers)} workers need one each; use a larger pod_cidr "
                "or a longer node_pod_prefix",
            )
        )
        return out
    pinned: list[tuple[int, IPv4Network]] = [
        (i, m.pod_cidr) for i, m in enumerate(site.machines) if m.pod_cidr is not None
    ]
    for n, (i, cidr) in enumerate(pinned):
        if not cidr.subnet_of(nw.pod_cidr) or cidr.prefixlen != nw.node_pod_prefix:
            out.append(
                (
                    ("machines", i, "pod_cidr"),
                    False,
                    f"pod_cidr {cidr} must be a /{nw.node_pod_prefix} inside {nw.pod_cidr}",
                )
            )
        for _, other in pinned[:n]:
            if cidr.overlaps(other):
                out.append(
                    (
                        ("machines", i, "pod_cidr"),
                        False,
                        f"pod_cidr {cidr} is already used by another machine",
                    )
                )
    return out


def _check_api(site: Site) -> list[Problem]:
    out: list[Problem] = []
    api = site.api
    net = site.network.node_cidr
    if api.vip not in net:
        out.append(
            (
                ("api", "vip"),
                False,
                f"the virtual IP {api.vip} is outside the node subnet {net}; VRRP can only "
                "move an address within the machines' own subnet",
            )
        )
    elif api.vip in (net.network_address, net.broadcast_address):
        out.append(
            (("api", "vip"), False, f"the virtual IP {api.vip} is the network or broadcast address")
        )
    for m in site.machines:
        if m.address == api.vip:
            out.append(
                (
                    ("api", "vip"),
                    False,
                    f"the virtual IP {api.vip} is also the address of machine '{m.name}'; "
                    "pick an unused address in the node subnet",
                )
            )
    colocated = [m for m in site.load_balancers if m.has("control-plane")]
    if colocated and api.port == api.apiserver_port:
        out.append(
            (
                ("api", "port"),
                False,
                f"api.port {api.port} equals api.apiserver_port on machines that run both "
                f"HAProxy and kube-apiserver ({colocated[0].name}); use another port, e.g. 8443",
            )
        )
    priorities = Counter(site.vrrp_priority(m) for m in site.load_balancers)
    for i, m in enumerate(site.machines):
        if m.has("lb") and priorities[site.vrrp_priority(m)] > 1 and m.vrrp_priority is not None:
            out.append(
                (
                    ("machines", i, "vrrp_priority"),
                    False,
                    f"VRRP priority {m.vrrp_priority} is shared with another lb machine; "
                    "make each unique so the VIP has a clear home",
                )
            )
    return out


# Ranges no operator's machine can have as its address: a list of admin
# networks made only of these lets nobody in over SSH.
_NOT_OPERATORS = (
    IPv4Network("0.0.0.0/8"),
    IPv4Network("127.0.0.0/8"),
    IPv4Network("169.254.0.0/16"),
    IPv4Network("224.0.0.0/4"),
    IPv4Network("240.0.0.0/4"),
)


def _check_firewall(site: Site) -> list[Problem]:
    """The firewall must keep kubeprem's own way in, and say why each hole exists.

    kubeprem reaches every machine by SSH at its IPv4 address, from a machine
    whose address it cannot know. So the admin networks (SSH's sources) must
    hold at least one IPv4 range an operator's machine could be in; the
    default, anywhere, always does. Openings only add to what is allowed, but
    one on a port the firewall guards (SSH, etcd, the API, the kubelet,
    NodePorts) would do nothing there, so it is refused with the setting that
    governs that port.
    """
    out: list[Problem] = []
    fw = site.firewall
    nw = site.network
    admin_path = ("firewall", "admin_networks")
    if not fw.admin_networks:
        out.append(
            (
                admin_path,
                False,
                "firewall.admin_networks is empty: SSH would be closed to everyone, kubeprem "
                "included; list the networks you administer from, or leave the key out to "
                "allow SSH from anywhere",
            )
        )
    else:
        unusable = (*_NOT_OPERATORS, nw.pod_cidr, nw.service_cidr)
        usable = [
            n
            for n in fw.admin_networks
            if isinstance(n, IPv4Network) and not any(n.subnet_of(u) for u in unusable)
        ]
        if not usable:
            out.append(
                (
                    admin_path,
                    False,
                    "none of firewall.admin_networks can hold the machine kubeprem runs on: "
                    "kubeprem connects over SSH to the machines' IPv4 addresses, so list at "
                    "least one IPv4 network outside loopback, link-local, multicast and the "
                    "pod and service ranges (e.g. your admin network or the node subnet "
                    f"{nw.node_cidr})",
                )
            )
    for i, opening in enumerate(fw.openings):
        base = ("firewall", "openings", i)
        if not opening.reason.strip():
            out.append(
                (
                    (*base, "reason"),
                    False,
                    "the reason is blank; say who needs this opening and why",
                )
            )
        known = {m.name for m in site.machines}
        for j, name in enumerate(opening.machines):
            if name not in known:
                out.append(
                    (
                        (*base, "machines", j),
                        False,
                        f"no machine is named '{name}'",
                    )
                )
        targets = [m for m in site.machines if opening.applies_to(m)]
        clash = _guarded_clash(site, opening, targets)
        if clash:
            out.append(((*base, "ports"), False, clash))
    for key, nets in (
        ("admin_networks", fw.admin_networks),
        ("nodeport_networks", fw.nodeport_networks),
        ("monitoring_networks", fw.monitoring_networks),
    ):
        for j, net in enumerate(nets):
            if nets.index(net) != j:
                out.append(
                    (("firewall", key, j), False, f"{net} is listed twice in firewall.{key}")
                )
    return out


_GOVERNED_BY = {
    "ssh": "SSH is opened only by firewall.admin_networks; add the sources there",
    "kube-apiserver": "the API port is opened by firewall.admin_networks; add the sources there",
    "api-vip": "the VIP's port is opened by firewall.admin_networks; add the sources there",
    "kubelet": "the kubelet is opened by firewall.monitoring_networks; add the sources there",
    "nodeports": "NodePorts are opened by firewall.nodeport_networks; add the sources there",
    "etcd": "etcd is reached only by the etcd and control-plane machines; run clients there",
    "etcd-metrics": "etcd's metrics port is opened by firewall.monitoring_networks; add the "
    "sources there",
}


def _guarded_clash(site: Site, opening: Opening, targets: list[Machine]) -> str:
    """The message for an opening that touches a guarded port, or ''."""
    # Imported here: the firewall renderer imports the site package, which
    # imports these checks; the guarded ports are the renderer's own table.
    from kubeprem.components.firewall import guarded_ports

    for m in targets:
        for name, proto, (low, high) in guarded_ports(site, m):
            if proto != opening.protocol:
                continue
            for a, b in opening.port_ranges():
                if a <= high and low <= b:
                    port = f"{low}" if low == high else f"{low}-{high}"
                    return (
                        f"{proto} port {port} on '{m.name}' is guarded by the firewall; "
                        f"{_GOVERNED_BY.get(name, 'it cannot be widened by an opening')}"
                    )
    return ""

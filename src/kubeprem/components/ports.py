"""The TCP ports each machine's components listen on, and the unit that owns each.

Pure: ``listens(site, machine)`` from the renderers' own settings (their port
constants, bind addresses and the site's API ports), plus the programs'
defaults that the rendered configurations leave as they are (the kubelet's
and kube-proxy's health ports, the secure ports of the controller-manager
and the scheduler). Read by apply's preflight: a port another program holds
keeps the component from starting, and the health gate would only time out.

keepalived speaks VRRP (IP protocol 112) and listens on no TCP port; the
node exporter (9100) is the monitoring deploy's, not apply's.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from kubeprem.components import (
    apiserver,
    controller_manager,
    etcd,
    haproxy,
    kube_proxy,
    kubelet,
    scheduler,
)
from kubeprem.components.firewall import KUBELET_PORT
from kubeprem.components.versions import features
from kubeprem.site.model import Machine, Site

ANY = "0.0.0.0"  # every IPv4 address of the machine

# Defaults of the programs, which the rendered settings keep.
KUBELET_HEALTHZ = ("127.0.0.1", 10248)  # KubeletConfiguration healthzBindAddress/healthzPort
KUBE_PROXY_HEALTHZ = (ANY, 10256)  # KubeProxyConfiguration healthzBindAddress
CONTROLLER_MANAGER_SECURE_PORT = 10257  # --secure-port
SCHEDULER_SECURE_PORT = 10259  # --secure-port


@dataclass(frozen=True)
class Listen:
    """One TCP listener a component opens.

    ``address``: the IPv4 address it binds, ``ANY`` for all of them.
    ``setting``: the site setting that moves the port, when there is one.
    ``dual_stack``: a Go program binding ``ANY``: Go opens one IPv6 socket
    that takes IPv4 too (``ss`` shows it as "*"), so a listener of any family
    on the port keeps it from starting, an IPv6-only one included.
    """

    port: int
    address: str
    component: str
    service: str
    what: str
    setting: str | None = None
    dual_stack: bool = False


def _split(bind: str) -> tuple[str, int]:
    address, _, port = bind.rpartition(":")
    return address or ANY, int(port)


def listens(site: Site, machine: Machine) -> list[Listen]:
    """Every TCP listener of the machine's components, in start order."""
    own = str(machine.address)
    out: list[Listen] = []
    if machine.has("etcd"):
        svc = etcd.SERVICE
        out += [
            Listen(etcd.CLIENT_PORT, own, "etcd", svc, "client URL"),
            Listen(etcd.CLIENT_PORT, "127.0.0.1", "etcd", svc, "client URL on loopback"),
            Listen(etcd.PEER_PORT, own, "etcd", svc, "peer URL"),
            Listen(etcd.METRICS_PORT, own, "etcd", svc, "metrics and health"),
        ]
    if machine.has("control-plane"):
        out.append(
            Listen(
                site.api.apiserver_port,
                apiserver.BIND_ADDRESS,
                "kube-apiserver",
                apiserver.SERVICE,
                "secure port",
                "api.apiserver_port",
                dual_stack=apiserver.BIND_ADDRESS == ANY,
            )
        )
        out.append(
            Listen(
                CONTROLLER_MANAGER_SECURE_PORT,
                own,
                "kube-controller-manager",
                controller_manager.SERVICE,
                "health and metrics",
            )
        )
        out.append(
            Listen(
                SCHEDULER_SECURE_PORT,
                own,
                "kube-scheduler",
                scheduler.SERVICE,
                "health and metrics",
            )
        )
        insecure = features(site).scheduler_insecure_bind
        if insecure is not None:
            address, port = _split(insecure)
            out.append(
                Listen(
                    port,
                    address,
                    "kube-scheduler",
                    scheduler.SERVICE,
                    "plain-HTTP health and metrics",
                )
            )
    if machine.has("lb"):
        svc = haproxy.SERVICE
        out += [
            Listen(site.api.port, ANY, "haproxy", svc, "API frontend (the VIP's port)", "api.port"),
            Listen(haproxy.MONITOR_PORT, "127.0.0.1", "haproxy", svc, "monitor and stats"),
            Listen(haproxy.METRICS_PORT, own, "haproxy", svc, "Prometheus exporter"),
        ]
    if machine.has("worker"):
        out += [
            Listen(KUBELET_PORT, ANY, "kubelet", kubelet.SERVICE, "API", dual_stack=True),
            Listen(KUBELET_HEALTHZ[1], KUBELET_HEALTHZ[0], "kubelet", kubelet.SERVICE, "health"),
            Listen(kube_proxy.METRICS_PORT, own, "kube-proxy", kube_proxy.SERVICE, "metrics"),
            Listen(
                KUBE_PROXY_HEALTHZ[1],
                KUBE_PROXY_HEALTHZ[0],
                "kube-proxy",
                kube_proxy.SERVICE,
                "health",
                dual_stack=KUBE_PROXY_HEALTHZ[0] == ANY,
            ),
        ]
    return out


def _ipv4(address: str) -> IPv4Address | None:
    """The IPv4 address a listener's address stands for, as ``ss`` or
    /proc/net/tcp show it: "10.0.0.1", "[::ffff:10.0.0.1]", "127.0.0.53%lo".
    None for IPv6 addresses and for anything that is not an address."""
    try:
        parsed = ip_address(address.strip("[]").partition("%")[0])
    except ValueError:
        return None
    if isinstance(parsed, IPv6Address):
        return parsed.ipv4_mapped
    return parsed


def clashes(ours: str, theirs: str, *, dual_stack: bool = False) -> bool:
    """Whether a listener on ``theirs`` keeps a component from binding the
    same port on ``ours`` (an IPv4 address or ``ANY``).

    "*" is a dual-stack wildcard (``ss`` prints "[::]" for an IPv6-only
    one, which leaves an IPv4 socket alone); a wildcard on either side
    clashes with every address, two addresses only when equal. A component
    whose own wildcard socket is dual-stack (``Listen.dual_stack``) clashes
    with every listener on its port. Otherwise an address that cannot be
    read is taken not to clash: the preflight refuses only what it knows.
    """
    if theirs == "*" or (dual_stack and ours == ANY):
        return True
    their = _ipv4(theirs)
    if their is None:
        return False
    if ours == ANY or their == IPv4Address(ANY):
        return True
    return their == IPv4Address(ours)


__all__ = ["ANY", "Listen", "clashes", "listens"]

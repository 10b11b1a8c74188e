"""Static routes to the workers' pod subnets, on every machine.

Called for every machine: workers need them to reach pods on other workers,
controllers so the API server can reach pods (webhooks, aggregated APIs,
``kubectl port-forward`` paths). Each machine gets a route to every *other*
worker's pod CIDR via that worker's address; a worker's own subnet is on its
CNI bridge and never routed.

The routes are a batch file for ``ip -batch`` (one ``route replace`` per
route), run by a oneshot unit with ``RemainAfterExit`` so they come back
after a reboot. Every route carries kubeprem's routing protocol tag
(``ROUTE_PROTO``) and the batch starts by flushing routes with that tag:
routes to a worker that has left the site disappear on the next restart,
and stopping the unit removes them all. With no other worker both files are
still rendered and valid (the batch only flushes): the unit keeps clearing
routes left from an earlier shape of the site instead of leaving a stale
unit and stale routes behind.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from kubeprem.components.base import File, HostContext, Rendered
from kubeprem.components.systemd import quote_arg, unit

COMPONENT = "routes"
SERVICE = "kubeprem-pod-routes.service"
IP = "/sbin/ip"
BATCH = "/etc/kubeprem/pod-routes.batch"
# iproute2 routing protocol number marking routes as kubeprem's; not one of
# the numbers in /etc/iproute2/rt_protos or used by common routing daemons.
ROUTE_PROTO = "200"


def pod_routes(ctx: HostContext) -> list[tuple[IPv4Network, IPv4Address]]:
    """(destination pod CIDR, gateway) for every other worker, in site order."""
    cidrs = ctx.site.pod_cidrs
    return [(cidrs[w.name], w.address) for w in ctx.site.workers if w.name != ctx.machine.name]


def _flush() -> list[str]:
    return ["route", "flush", "proto", ROUTE_PROTO]


def _replace(dst: IPv4Network, via: IPv4Address) -> list[str]:
    return ["route", "replace", str(dst), "via", str(via), "proto", ROUTE_PROTO]


def batch(ctx: HostContext) -> str:
    """The ``ip -batch`` file: flush kubeprem's routes, then add each one."""
    commands = [_flush(), *(_replace(dst, via) for dst, via in pod_routes(ctx))]
    return "".join(" ".join(words) + "\n" for words in commands)


def unit_file(ctx: HostContext) -> tuple[str, str]:
    stop = " ".join(quote_arg(a) for a in [IP, *_flush()])
    return unit(
        SERVICE,
        "Routes to the other workers' pod subnets (kubeprem)",
        [IP, "-batch", BATCH],
        service_type="oneshot",
        limit_nofile=None,
        extra_service=("RemainAfterExit=yes", f"ExecStop={stop}"),
    )


def render(ctx: HostContext) -> Rendered:
    path, text = unit_file(ctx)
    return Rendered(
        COMPONENT,
        (File.text(BATCH, batch(ctx)), File.text(path, text)),
        services=(SERVICE,),
    )

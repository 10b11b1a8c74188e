"""HAProxy on each ``lb`` machine: one TCP front door for every API server.

Called by the render command and the plan for machines with the ``lb``
role. Traffic is passed through as TCP (TLS ends at the API servers, which
need the client certificates); health is judged by HTTPS ``GET /readyz``
against each API server, verified against the cluster CA and authenticated
with a client certificate (anonymous auth is off). A monitor URI and the
stats page listen on loopback only; keepalived's check uses the former.
HAProxy's built-in Prometheus exporter (Debian's 2.6 is built with it:
"Available services : prometheus-exporter" in ``haproxy -vv``) answers
``/metrics`` on the machine's own address, port 8405, for Prometheus; the
node firewall opens that port to the node subnet, the pods and
``firewall.monitoring_networks`` only.

Bind address: the frontend listens on every address of the machine, not
just the VIP. Binding the VIP would need ``net.ipv4.ip_nonlocal_bind=1`` on
every backup (which does not hold the VIP yet) and would leave nothing
listening to check on a backup; listening everywhere keeps every backup's
HAProxy warm and checkable, so a failover only moves the address. The price
is that each lb machine also answers on its own address at the VIP port,
which the node firewall narrows to the same networks as the VIP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kubeprem.components import paths
from kubeprem.components.base import File, HostContext, Rendered
from kubeprem.components.systemd import unit
from kubeprem.site.model import Machine, Site

BIN = "/usr/sbin/haproxy"  # from Debian's haproxy package
SERVICE = "haproxy.service"  # replaces the package's unit of the same name
MONITOR_PORT = 8404
MONITOR_URI = "/healthz"
STATS_URI = "/stats"
METRICS_PORT = 8405
METRICS_PATH = "/metrics"
# API clients hold one or two long connections each (kubelets, kube-proxy,
# controllers): thousands are plenty for hundreds of nodes
MAXCONN = 8000
# The API server certificate carries this DNS name (kubeadm's SAN list);
# health checks send it as SNI and require it, so a check never trusts a
# stranger that merely holds some cluster-CA certificate.
APISERVER_NAME = "kubernetes"


@dataclass(frozen=True)
class Timeouts:
    """Connection timeouts and health-check cadence, in seconds.

    The client/server idle limits cover long watches: the API server ends
    watches after 30-60 min (--min-request-timeout 1800 s, randomised up to
    twice that), so an idle limit of one hour never cuts a live watch, while
    ``kubectl logs -f`` on a quiet pod survives too.

    A dead API server must cost a client no more than a short delay. After
    a machine is powered off, its address swallows SYNs until the neighbour
    entry fails (several seconds), and health checks need ``fall`` failures
    to notice. Meanwhile three things keep clients away from it:

    - ``connect`` is short (a LAN connect takes well under a millisecond),
      and a failed connect is retried on another server (``option
      redispatch 1``), so the client waits ``connect`` once, not
      ``retries`` times;
    - the first failed connect marks the server down at once (``observe
      layer4``, ``error-limit 1``, ``on-error mark-down``) for every later
      client; checks bring it back after ``rise`` successes;
    - checks run every ``check_interval``, and every ``fast_interval``
      while a server is changing state.
    """

    connect: float = 0.5
    client: float = 3600
    server: float = 3600
    check: float = 3  # read timeout of a check once connected
    check_interval: float = 1
    fast_interval: float = 0.5
    fall: int = 2
    rise: int = 2
    retries: int = 3

    def drain_seconds(self) -> int:
        """Seconds from an API server's /readyz turning red until HAProxy
        has stopped sending it new connections: ``fall`` failed checks, plus
        one interval for a check already under way (counted at the slow
        interval, rounded up)."""
        return math.ceil(self.check_interval * (self.fall + 1))


def _t(seconds: float) -> str:
    """A duration in HAProxy's syntax: ``Nh``, ``Ns`` or ``Nms``."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def config(site: Site, machine: Machine, timeouts: Timeouts = Timeouts()) -> str:
    """haproxy.cfg for the lb machine ``machine`` (its exporter binds there)."""
    t = timeouts
    servers = [
        f"    server {m.name} {m.address}:{site.api.apiserver_port}" for m in site.controllers
    ]
    lines = [
        "# Rendered by kubeprem: the Kubernetes API endpoint on the VIP.",
        "global",
        "    log /dev/log local0",
        "    user haproxy",
        "    group haproxy",
        # two descriptors per connection: needs ~16k, within the unit's LimitNOFILE
        f"    maxconn {MAXCONN}",
        "    ssl-default-server-options ssl-min-ver TLSv1.2",
        "",
        "defaults",
        "    log global",
        "    mode tcp",
        "    option tcplog",
        "    option dontlognull",
        f"    timeout connect {_t(t.connect)}",
        f"    timeout client {_t(t.client)}",
        f"    timeout server {_t(t.server)}",
        f"    timeout check {_t(t.check)}",
        # a failed connect is retried at once on another server
        f"    retries {t.retries}",
        "    option redispatch 1",
        "",
        "# loopback only: monitor URI for keepalived's check, and the stats page",
        "frontend monitor",
        "    mode http",
        f"    bind 127.0.0.1:{MONITOR_PORT}",
        "    timeout client 10s",
        f"    monitor-uri {MONITOR_URI}",
        "    stats enable",
        f"    stats uri {STATS_URI}",
        "    stats refresh 10s",
        "",
        "# Prometheus exporter on this machine's address (node firewall: 8405)",
        "frontend prometheus",
        "    mode http",
        f"    bind {machine.address}:{METRICS_PORT}",
        "    timeout client 10s",
        f"    http-request use-service prometheus-exporter if {{ path {METRICS_PATH} }}",
        "    no log",
        "",
        "frontend kube-apiserver",
        f"    bind :{site.api.port}",
        "    default_backend kube-apiserver",
        "",
        "backend kube-apiserver",
        "    balance leastconn",
        "    option httpchk",
        "    http-check send meth GET uri /readyz",
        "    http-check expect status 200",
        (
            f"    default-server check check-ssl inter {_t(t.check_interval)}"
            f" fastinter {_t(t.fast_interval)} fall {t.fall} rise {t.rise}"
            " observe layer4 error-limit 1 on-error mark-down"
            f" verify required ca-file {paths.CA_CRT}"
            f" crt {paths.HAPROXY_HEALTHCHECK_PEM}"
            f" check-sni {APISERVER_NAME} verifyhost {APISERVER_NAME}"
        ),
        *servers,
        "",
    ]
    return "\n".join(lines)


def unit_file() -> tuple[str, str]:
    check = [BIN, "-c", "-q", "-f", paths.HAPROXY_CFG]
    return unit(
        SERVICE,
        "HAProxy in front of the Kubernetes API servers",
        [BIN, "-Ws", "-f", paths.HAPROXY_CFG, "-p", "/run/haproxy.pid"],
        documentation="man:haproxy(1)",
        service_type="notify",  # -Ws: master-worker mode with sd_notify
        exec_start_pre=[check],
        # haproxy raises its soft limit to 2 * maxconn + a few; the hard
        # limit must allow that without CAP_SYS_RESOURCE (lab containers)
        limit_nofile=65536,
        extra_service=[
            # reload re-checks first, so a broken file never replaces a good one
            f"ExecReload={BIN} -c -q -f {paths.HAPROXY_CFG}",
            "ExecReload=/bin/kill -USR2 $MAINPID",
            "KillMode=mixed",
        ],
    )


def render(ctx: HostContext) -> Rendered:
    path, text = unit_file()
    return Rendered(
        component="haproxy",
        files=(File.text(paths.HAPROXY_CFG, config(ctx.site, ctx.machine)), File.text(path, text)),
        services=(SERVICE,),
        # a new configuration or health-check certificate: the master starts
        # new workers and the old ones finish their connections, so the VIP
        # never refuses a connection (a restart would, for about a second)
        reloads=(SERVICE,),
    )

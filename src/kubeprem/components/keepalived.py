"""keepalived on each ``lb`` machine: the VIP follows a healthy HAProxy.

Called by the render command and the plan for machines with the ``lb``
role. One VRRP instance holds ``site.api.vip`` on the machine's interface;
adverts go by unicast to the other lb machines, so the network needs no
multicast (and nothing else on the segment hears them).

Decisions:

- VRRP version 3, because version 2 only allows whole-second adverts and
  the failover budget (3 s) needs shorter ones: the backups take over
  after 3 * ``advert_int`` plus a skew under one interval.
- HAProxy is tracked by a script that asks HAProxy's loopback monitor URI,
  not by ``vrrp_track_process``: that one listens on the kernel's process
  events connector, which is not available inside a network namespace
  (the lab's machines are containers), and a live process is not yet a
  listening one. A failing check puts the instance in FAULT (weight 0), so
  a machine without a working HAProxy never holds the VIP, whatever its
  priority.
- ``nopreempt``: after a failover the VIP stays where it is when the
  higher-priority machine comes back. Each move breaks every connection
  through the VIP (watches, ``kubectl exec``), so one move per failure is
  better than two. Priorities still decide the first election; all
  instances start as BACKUP, which ``nopreempt`` requires.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubeprem.components import haproxy, paths
from kubeprem.components.base import File, HostContext, Rendered
from kubeprem.components.systemd import unit
from kubeprem.site.model import Machine, Site

BIN = "/usr/sbin/keepalived"  # from Debian's keepalived package (2.2.7 in bookworm)
SERVICE = "keepalived.service"  # replaces the package's unit of the same name
CHECK_SCRIPT = "/etc/keepalived/check-haproxy.sh"
INSTANCE = "kube-apiserver-vip"
TRACK_SCRIPT = "haproxy"


@dataclass(frozen=True)
class Tuning:
    """VRRP timing, the knobs of the failover time.

    Machine loss: backups take over after 3 * advert_int + skew (skew =
    (256 - priority) / 256 * advert_int), about 1.7 s at 0.5 s. HAProxy loss:
    check_interval * check_fall to notice, then the FAULT instance stops
    advertising and a backup takes over after its skew, about 2.3 s.
    Measured on the lab (``verify --chaos --scenario vip-failover``, power
    off of the holder): 1.1-2.1 s of failed probes, the rest of the gap
    being TCP's one-second SYN retransmission (docs/operations.md).
    """

    advert_int: float = 0.5
    check_interval: float = 1.0
    check_timeout: float = 1.0
    check_fall: int = 2
    check_rise: int = 2


def interface(site: Site, machine: Machine) -> str:
    return machine.interface or site.api.interface


def _num(x: float) -> str:
    return f"{x:g}"


def config(site: Site, machine: Machine, tuning: Tuning = Tuning()) -> str:
    t = tuning
    ifname = interface(site, machine)
    peers = [f"        {m.address}" for m in site.load_balancers if m.name != machine.name]
    vip = f"{site.api.vip}/{site.network.node_cidr.prefixlen}"
    lines = [
        f"# Rendered by kubeprem: the API virtual IP {site.api.vip} on {machine.name}.",
        "global_defs {",
        f"    router_id {machine.name}",
        "    vrrp_version 3",
        # scripts run as root, and only if no one else can change them
        "    enable_script_security",
        "    script_user root",
        "}",
        "",
        f"vrrp_script {TRACK_SCRIPT} {{",
        f'    script "{CHECK_SCRIPT}"',
        f"    interval {_num(t.check_interval)}",
        f"    timeout {_num(t.check_timeout)}",
        f"    fall {t.check_fall}",
        f"    rise {t.check_rise}",
        "    weight 0",
        "}",
        "",
        f"vrrp_instance {INSTANCE} {{",
        "    state BACKUP",
        "    nopreempt",
        f"    interface {ifname}",
        f"    virtual_router_id {site.api.vrrp_router_id}",
        f"    priority {site.vrrp_priority(machine)}",
        f"    advert_int {_num(t.advert_int)}",
        f"    unicast_src_ip {machine.address}",
        "    unicast_peer {",
        *peers,
        "    }",
        # drop adverts from anyone but the peers above
        "    check_unicast_src",
        "    virtual_ipaddress {",
        f"        {vip} dev {ifname}",
        "    }",
        "    track_script {",
        f"        {TRACK_SCRIPT}",
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines)


def check_script() -> str:
    """HAProxy is healthy when its loopback monitor URI answers 200.

    bash's /dev/tcp keeps the check free of curl or wget, which minimal
    machines lack; keepalived kills it after ``check_timeout``.
    """
    return "\n".join(
        [
            "#!/bin/bash",
            "# keepalived's check of HAProxy (rendered by kubeprem): exit 0 when the",
            "# loopback monitor URI answers HTTP 200.",
            f"exec 3<>/dev/tcp/127.0.0.1/{haproxy.MONITOR_PORT} || exit 1",
            f"printf 'GET {haproxy.MONITOR_URI} HTTP/1.0\\r\\n\\r\\n' >&3",
            "read -r _ status _ <&3",
            '[ "$status" = 200 ]',
            "",
        ]
    )


def unit_file() -> tuple[str, str]:
    return unit(
        SERVICE,
        "keepalived: VRRP for the Kubernetes API virtual IP",
        [BIN, "--dont-fork", "--vrrp", "-f", paths.KEEPALIVED_CONF],
        documentation="man:keepalived(8)",
        after=("network-online.target", haproxy.SERVICE),
        limit_nofile=None,
        extra_service=["ExecReload=/bin/kill -HUP $MAINPID", "KillMode=process"],
    )


def render(ctx: HostContext) -> Rendered:
    path, text = unit_file()
    return Rendered(
        component="keepalived",
        files=(
            File.text(paths.KEEPALIVED_CONF, config(ctx.site, ctx.machine)),
            File.text(CHECK_SCRIPT, check_script(), 0o755),
            File.text(path, text),
        ),
        services=(SERVICE,),
        # SIGHUP re-reads the configuration (new peers, a new priority); the
        # holder keeps the VIP, where a restart would move it
        reloads=(SERVICE,),
    )

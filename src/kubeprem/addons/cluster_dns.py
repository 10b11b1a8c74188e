"""The lab's cluster-DNS controller: Kubernetes API -> hosts file -> dnsmasq.

This file runs inside the ``cluster-dns`` pods (``kubeprem.addons.dns``
mounts it from a ConfigMap and starts it with the image's ``python3``); it
uses the standard library only and imports nothing from kubeprem. The unit
tests import its pure parts (``records``, ``hosts_text``, ``reverse_zones``,
the DNS packet code) as an ordinary module.

Every ``--interval`` seconds it lists Services, Endpoints and running Pods
with the pod's service-account token (``resourceVersion=0``: answered from
the API server's watch cache, not from etcd), turns them into the names
CoreDNS's ``kubernetes`` plugin serves, and, when the text differs, writes
one hosts file atomically into the directory dnsmasq watches
(``--hostsdir``); dnsmasq rereads it on the rename:

    <svc>.<ns>.svc.<domain>              the cluster IP; for a headless Service
                                         every address of its Endpoints
    <hostname>.<svc>.<ns>.svc.<domain>   an endpoint with a hostname (pods with
                                         spec.hostname and spec.subdomain, so
                                         StatefulSet pods: redis-0.redis.ns.svc...)
    <a-b-c-d>.<svc>.<ns>.svc.<domain>    other endpoints of headless Services
    <a-b-c-d>.<ns>.pod.<domain>          every running pod with an IP

Endpoints list ready addresses (and not-ready ones when the Service sets
publishNotReadyAddresses), so a headless name resolves to the ready pods,
as with CoreDNS. Not served: SRV records, ExternalName Services (CNAMEs);
hosts files cannot hold them.

Dead peers: a DNS pod on a machine that lost power stays in the kube-dns
Service's endpoints until the node is marked NotReady (the
controller-manager's grace period, 40 s by default), and every lookup
kube-proxy sends there times out; clients that resolve names (and Redis
Sentinel, whose lookups block its one thread) stall for that long. So each
controller also asks its peers (the other pods with ``--peer-label``, ready
ones only) for ``kubernetes.default.svc.<domain>`` twice a second, and when
one has not answered ``--peer-failures`` times in a row while its own
dnsmasq answers, deletes that pod at once (grace period 0): the endpoints
controller drops it from the Service, kube-proxy drops its conntrack
entries, and the Deployment starts a replacement. A DNS pod is stateless, so
deleting one that was only cut off costs nothing but a restart. The pod
list, the counting and the deletion are ``peer_watch.py``'s (mounted beside
this file, and also the Redis proxies' sidecar); the probe is a DNS query.

An HTTP endpoint (``--health-port``) answers the kubelet's probes:
``/health`` while the sync loop turns (even when the API is unreachable:
dnsmasq keeps answering from the last file), ``/ready`` once a file was
written and dnsmasq answers ``kubernetes.default.svc.<domain>``.

Run by hand: ``python3 cluster_dns.py lookup NAME [SERVER [PORT]]``.
"""

from __future__ import annotations

import http.server
import ipaddress
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

if __package__:  # imported as part of kubeprem (the renderer, the unit tests)
    from kubeprem.addons import peer_watch
else:  # in the pod: the ConfigMap mounts peer_watch.py beside this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import peer_watch  # type: ignore[import-not-found,no-redef]

Api = peer_watch.Api

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
HOSTS_FILE = "cluster.hosts"
LISTS = {
    "services": "/api/v1/services?resourceVersion=0",
    "endpoints": "/api/v1/endpoints?resourceVersion=0",
    "pods": "/api/v1/pods?resourceVersion=0&fieldSelector=status.phase%3DRunning",
}

Obj = Mapping[str, Any]
Record = tuple[str, str]  # (address, name)


# -- pure: API objects -> records -> hosts text ---------------------------------


def dashed(ip: str) -> str:
    """``10.200.1.5`` -> ``10-200-1-5``; IPv6 colons become dashes too."""
    return ip.replace(".", "-").replace(":", "-")


def records(services: Obj, endpoints: Obj, pods: Obj, domain: str) -> list[Record]:
    """Every (address, name) the cluster's DNS answers, sorted and unique."""
    out: set[Record] = set()
    headless: set[tuple[str, str]] = set()
    for svc in peer_watch.items(services):
        ns, name = peer_watch.meta(svc)
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName" or not name:
            continue
        ips = spec.get("clusterIPs") or [spec.get("clusterIP")]
        if spec.get("clusterIP") == "None":
            headless.add((ns, name))
            continue
        for ip in ips:
            if peer_watch.is_ip(ip):
                out.add((str(ip), f"{name}.{ns}.svc.{domain}"))
    for ep in peer_watch.items(endpoints):
        ns, name = peer_watch.meta(ep)
        if (ns, name) not in headless:
            continue
        base = f"{name}.{ns}.svc.{domain}"
        for subset in ep.get("subsets") or []:
            for addr in subset.get("addresses") or []:
                ip = addr.get("ip")
                if not peer_watch.is_ip(ip):
                    continue
                out.add((str(ip), base))
                host = addr.get("hostname")
                label = str(host) if host else dashed(str(ip))
                out.add((str(ip), f"{label}.{base}"))
    for pod in peer_watch.items(pods):
        ns, _ = peer_watch.meta(pod)
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or (pod.get("spec") or {}).get("hostNetwork"):
            continue
        ips = [p.get("ip") for p in status.get("podIPs") or []] or [status.get("podIP")]
        for ip in ips:
            if peer_watch.is_ip(ip):
                out.add((str(ip), f"{dashed(str(ip))}.{ns}.pod.{domain}"))
    return sorted(out, key=lambda r: (r[1], ipaddress.ip_address(r[0]).packed, r[0]))


def hosts_text(recs: Iterable[Record]) -> str:
    """A hosts file, one line per (address, name), so dnsmasq answers every
    address of a name and the reverse lookup of each address."""
    lines = [f"{ip} {name}" for ip, name in recs]
    return "# written by kubeprem cluster-dns; do not edit\n" + "".join(f"{x}\n" for x in lines)


def reverse_zones(cidr: str) -> list[str]:
    """The in-addr.arpa zones covering an IPv4 network, at octet boundaries
    (``10.32.0.0/24`` -> ``0.32.10.in-addr.arpa``; a /12 gives 16 /16 zones)."""
    net = ipaddress.IPv4Network(cidr)
    prefix = min(24, -(-net.prefixlen // 8) * 8)
    octets = prefix // 8
    zones = []
    for sub in net.subnets(new_prefix=max(prefix, net.prefixlen)):
        parts = str(sub.network_address).split(".")[:octets]
        zones.append(".".join(reversed(parts)) + ".in-addr.arpa")
    return zones


# -- pure: a DNS query and its answer ---------------------------------------------


def query_packet(name: str, qid: int, qtype: int = 1) -> bytes:
    """A recursive-desired query for ``name`` (type A by default)."""
    labels = [x for x in name.rstrip(".").split(".") if x]
    qname = b"".join(bytes([len(x)]) + x.encode("ascii") for x in labels) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)


def _skip_name(data: bytes, pos: int) -> int:
    while True:
        length = data[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length == 0:
            return pos + 1
        pos += 1 + length


def parse_answer(data: bytes, qid: int) -> tuple[int, list[str]]:
    """(rcode, IPv4 addresses of the A records) of a response to ``qid``."""
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", data[:12])
    if rid != qid or not flags & 0x8000:
        raise ValueError("not the answer to this query")
    pos = 12
    for _ in range(qd):
        pos = _skip_name(data, pos) + 4
    out = []
    for _ in range(an):
        pos = _skip_name(data, pos)
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[pos : pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            out.append(socket.inet_ntoa(data[pos : pos + 4]))
        pos += rdlen
    return flags & 0x000F, out


def lookup(name: str, server: str = "127.0.0.1", port: int = 53, timeout: float = 2.0) -> list[str]:
    """A records of ``name`` from ``server`` over UDP; raises on NXDOMAIN or errors."""
    qid = random.randrange(1 << 16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(query_packet(name, qid), (server, port))
        rcode, addrs = parse_answer(s.recv(4096), qid)
    if rcode != 0:
        raise LookupError(f"{name}: rcode {rcode}" + (" (NXDOMAIN)" if rcode == 3 else ""))
    return addrs


# -- I/O: the API, the file, the probes -------------------------------------------


def write_if_changed(directory: str, text: str) -> bool:
    """Replace the hosts file by rename (dnsmasq ignores dot files, and
    rereads the file on the rename); False when it already holds ``text``."""
    path = os.path.join(directory, HOSTS_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return False
    except FileNotFoundError:
        pass
    tmp = os.path.join(directory, f".{HOSTS_FILE}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True


class State:
    def __init__(self) -> None:
        self.last_loop = time.monotonic()
        self.synced = False
        self.pods: Obj = {}


def sync_loop(api: Api, state: State, domain: str, directory: str, interval: float) -> None:
    failing = False
    while True:
        state.last_loop = time.monotonic()
        try:
            docs = {kind: api.get(path) for kind, path in LISTS.items()}
            state.pods = docs["pods"]
            recs = records(docs["services"], docs["endpoints"], docs["pods"], domain)
            if write_if_changed(directory, hosts_text(recs)):
                log(f"wrote {len(recs)} records")
            state.synced = True
            if failing:
                log("API reachable again")
            failing = False
        except Exception as exc:  # keep serving the last file; say so once
            if not failing:
                log(f"sync failed, serving the last records: {exc!r}")
            failing = True
        time.sleep(interval)


def dns_answers(domain: str, dns_port: int) -> Callable[[str], bool]:
    """A peer probe: whether ``server`` answers ``kubernetes.default.svc.<domain>``."""
    name = f"kubernetes.default.svc.{domain}"

    def answers(server: str) -> bool:
        try:
            return bool(lookup(name, server, dns_port, timeout=1.0))
        except (OSError, LookupError, ValueError):
            return False

    return answers


def health_server(port: int, state: State, domain: str, dns_port: int) -> http.server.HTTPServer:
    """``/health`` while the sync loop turns, ``/ready`` once dnsmasq answers."""

    def answer(path: str) -> tuple[int, str]:
        if path == "/health":
            ok = time.monotonic() - state.last_loop < 60
            return (200, "sync loop running") if ok else (503, "sync loop stuck")
        if path == "/ready":
            ok, text = ready(state, domain, dns_port)
            return 200 if ok else 503, text
        return 404, "unknown path"

    return peer_watch.text_server(port, answer)


def ready(state: State, domain: str, dns_port: int) -> tuple[bool, str]:
    if not state.synced:
        return False, "no records written yet"
    name = f"kubernetes.default.svc.{domain}"
    try:
        addrs = lookup(name, "127.0.0.1", dns_port, timeout=1.0)
    except (OSError, LookupError, ValueError) as exc:
        return False, f"dnsmasq does not answer {name}: {exc}"
    return bool(addrs), f"{name} is {', '.join(addrs) or 'empty'}"


def log(message: str) -> None:
    print(f"cluster-dns: {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="the controller (the default)")
    run.add_argument("--domain", default="cluster.local")
    run.add_argument("--hosts-dir", default="/run/cluster-dns/hosts")
    run.add_argument("--interval", type=float, default=2.0)
    run.add_argument("--dns-port", type=int, default=5353)
    run.add_argument("--health-port", type=int, default=8081)
    run.add_argument("--peer-label", default="k8s-app=kube-dns", help="KEY=VALUE of the peers")
    run.add_argument(
        "--peer-failures", type=int, default=4, help="unanswered probes in a row: 0 = never delete"
    )
    one = sub.add_parser("lookup", help="ask a DNS server for a name's A records")
    one.add_argument("name")
    one.add_argument("server", nargs="?", default="127.0.0.1")
    one.add_argument("port", nargs="?", type=int, default=53)
    args = p.parse_args(argv)
    if args.command == "lookup":
        try:
            print("\n".join(lookup(args.name, args.server, args.port)))
        except (OSError, LookupError, ValueError) as exc:
            print(f"{args.name}: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command != "run":
        p.print_help()
        return 2
    # PID 1 of its container: without a handler, SIGTERM is ignored and every
    # pod deletion waits out its grace period
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    state = State()
    server = health_server(args.health_port, state, args.domain, args.dns_port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"domain {args.domain}, every {args.interval:g} s into {args.hosts_dir}")
    if args.peer_failures > 0:
        threading.Thread(
            target=peer_watch.peer_loop,
            args=(
                Api(),
                lambda: state.pods,
                peer_watch.parse_selector(args.peer_label),
                dns_answers(args.domain, args.dns_port),
                args.peer_failures,
                log,
            ),
            daemon=True,
        ).start()
    sync_loop(Api(), state, args.domain, args.hosts_dir, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

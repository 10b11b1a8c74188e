"""etcd on each member of the ``etcd`` role: mutual TLS for clients and peers.

Called by the render command and the plan for machines with the ``etcd``
role. Clients (the API servers, etcdctl with the healthcheck certificate)
and peers must both present a certificate signed by the etcd CA; the
listeners are the member's own address and loopback (for local etcdctl and
an API server on the same machine). The data directory must be mode 0700,
which etcd checks on start-up; creating it so is the apply's job, this
renderer only names it (paths.ETCD_DATA).
"""

from __future__ import annotations

from kubeprem.components import paths
from kubeprem.components.base import File, HostContext, Rendered
from kubeprem.components.systemd import flags, unit
from kubeprem.components.versions import features
from kubeprem.site.model import Machine, Site

CLIENT_PORT = 2379
PEER_PORT = 2380
# /metrics and /health on a listener of their own, so that monitoring can be
# let in without opening the key-value port (2379). etcd serves an https
# metrics URL with the client TLS settings (--cert-file, --key-file,
# --trusted-ca-file, --client-cert-auth): a client certificate signed by the
# etcd CA is still required, but this listener answers nothing but metrics
# and health, so a scraper's certificate grants no access to the data.
METRICS_PORT = 2381
SERVICE = "etcd.service"

# Defaults chosen for a LAN: heartbeat 100 ms and election timeout 1 s are
# etcd's own and suit round trips well under 10 ms. 10000 entries between
# snapshots (etcd 3.4's default is 100000) bounds memory and restart time,
# as kubeadm and etcd 3.5.x (which lowered its default) do.
HEARTBEAT_MS = 100
ELECTION_TIMEOUT_MS = 1000
SNAPSHOT_COUNT = 10000


def client_url(m: Machine) -> str:
    return f"https://{m.address}:{CLIENT_PORT}"


def peer_url(m: Machine) -> str:
    return f"https://{m.address}:{PEER_PORT}"


def metrics_url(m: Machine) -> str:
    return f"https://{m.address}:{METRICS_PORT}"


def client_urls(site: Site) -> list[str]:
    """Every member's client URL, in site order: the API server's --etcd-servers."""
    return [client_url(m) for m in site.etcd_members]


def initial_cluster(site: Site) -> str:
    return ",".join(f"{m.name}={peer_url(m)}" for m in site.etcd_members)


def argv(ctx: HostContext) -> list[str]:
    site, m = ctx.site, ctx.machine
    return [
        f"{paths.BIN_DIR}/etcd",
        *flags(
            {
                "name": m.name,
                "data-dir": paths.ETCD_DATA,
                # clients
                "listen-client-urls": f"{client_url(m)},https://127.0.0.1:{CLIENT_PORT}",
                "advertise-client-urls": client_url(m),
                "client-cert-auth": True,
                "trusted-ca-file": paths.ETCD_CA_CRT,
                "cert-file": paths.ETCD_SERVER_CRT,
                "key-file": paths.ETCD_SERVER_KEY,
                # peers
                "listen-peer-urls": peer_url(m),
                "initial-advertise-peer-urls": peer_url(m),
                "peer-client-cert-auth": True,
                "peer-trusted-ca-file": paths.ETCD_CA_CRT,
                "peer-cert-file": paths.ETCD_PEER_CRT,
                "peer-key-file": paths.ETCD_PEER_KEY,
                # bootstrap: ignored once the data directory holds a member,
                # so the same flags serve restarts; a member added to a
                # running cluster (node add: etcdctl member add first) joins
                "initial-cluster": initial_cluster(site),
                "initial-cluster-token": site.cluster.name,
                "initial-cluster-state": "existing" if ctx.options.etcd_existing else "new",
                # tuning and operation
                "heartbeat-interval": HEARTBEAT_MS,
                "election-timeout": ELECTION_TIMEOUT_MS,
                "snapshot-count": SNAPSHOT_COUNT,
                "listen-metrics-urls": metrics_url(m),
                # 3.4 defaults to the deprecated capnslog; zap is 3.5's default
                "logger": "zap",
                **_corrupt_check(site),
            }
        ),
    ]


def _corrupt_check(site: Site) -> dict[str, str | bool]:
    """Compare the data with the other members before serving: a flag in
    etcd 3.4 (the 1.20 row), a feature gate from 3.6 (the flag is deprecated
    there)."""
    if features(site).etcd_feature_gates:
        return {"feature-gates": "InitialCorruptCheck=true"}
    return {"experimental-initial-corrupt-check": True}


def render(ctx: HostContext) -> Rendered:
    path, text = unit(
        SERVICE,
        "etcd key-value store (Kubernetes cluster state)",
        argv(ctx),
        documentation="https://etcd.io/docs/",
        service_type="notify",  # etcd tells systemd once it has joined the cluster
        limit_nofile=65536,
    )
    return Rendered(component="etcd", files=(File.text(path, text),), services=(SERVICE,))

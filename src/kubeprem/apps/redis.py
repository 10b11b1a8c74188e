"""Redis, highly available: a primary, two replicas, three Sentinels, one stable address.

Pure builder called by the ``app`` commands through ``kubeprem.apps.APPS``.

Topology ``sentinel`` (the default):

- StatefulSet ``redis`` (3 pods, AOF on a claim each) behind the headless
  Service ``redis-headless``; pod 0 is the first primary. At start each pod
  asks the Sentinels (then its peers) who the primary is and replicates it,
  so a restarted old primary never comes back as a second primary.
- StatefulSet ``redis-sentinel`` (3 pods, quorum 2) behind
  ``redis-sentinel-headless``; Service ``redis-sentinel`` for Sentinel-aware
  clients. Each Sentinel keeps one ID across restarts (from its pod name), so
  a restarted Sentinel replaces its entry in its peers' tables instead of
  leaving a voter there that never answers.
- Redis and Sentinel resolve names with blocking lookups in their single
  thread. After a machine is powered off, the cluster DNS Service sends some
  lookups to that machine's DNS pod until it is removed from the endpoints
  (kubeprem.addons.cluster_dns deletes it within seconds); with the
  resolver's defaults (5 s timeout, 2 attempts, ``ndots:5`` and three search
  domains) one lookup blocked a Sentinel for 20 s, it went into TILT mode
  (30 s without acting) and no failover happened. So every name here is
  full, and the pods' resolver gives up after 1 s (``ndots:1``, ``timeout:1``,
  ``attempts:1``): a lookup that fails is retried on the next reconnect;
  and the start script makes a Sentinel enter TILT only after a 10 s stall.
- Deployment ``redis-proxy`` (2 HAProxy pods) behind Service ``redis``: the
  one ``host:port`` for clients that know nothing of Sentinel (BigBlueButton).
  HAProxy checks every Redis pod each second with ``AUTH``, ``INFO
  replication`` and ``role:master``, and ``on-marked-down shutdown-sessions``
  closes connections to a primary that was demoted, so clients reconnect to
  the new one. (A Service selecting a ``role=primary`` pod label cannot do
  that: established connections keep their conntrack entry to the old pod.)
  The race window is described in docs/redis.md.
- Each proxy pod has a ``peer-watch`` sidecar (kubeprem.addons.peer_watch,
  as the cluster DNS pods do): a proxy on a machine that lost power would
  stay in the ``redis`` Service for the node grace period (40 s), and half
  the new connections would hang; its living peer deletes it after 4 probes
  (about 2 s) instead. With one proxy there is no peer, and no sidecar.

The password lives in the Secret ``redis-auth`` only: Redis, Sentinel and
HAProxy write their configuration at start into a memory-backed emptyDir
from the Secret mounted as a file. ``min-replicas-to-write 1`` makes a lone,
isolated primary refuse writes, so a write acknowledged with ``WAIT 1`` is on
a replica before the client sees it.

Topology ``cluster``: sharded Redis Cluster, 3 primaries + 3 replicas, and a
Job that creates the cluster once; clients must be cluster-aware.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubeprem.addons.dns import PEER_WATCH, peer_watch_source
from kubeprem.apps import base as b
from kubeprem.apps.values import ClusterDomain, ResourcesV, Spread, StorageV, Values
from kubeprem.sensitive import Sensitive

APP = "redis"
PEER_WATCH_IMAGE = "cluster-dns"  # the catalogue image with python3
PEER_WATCH_HEALTH = 8406
SECRET = "redis-auth"
MASTER = "mymaster"


class RedisValues(Values):
    namespace: str = "redis"
    topology: Literal["sentinel", "cluster"] = "sentinel"
    replicas: int = Field(default=3, ge=3, le=9)  # sentinel: primary + replicas
    sentinels: int = Field(default=3, ge=3, le=7)
    down_after_ms: int = Field(default=4000, ge=1000)
    failover_timeout_ms: int = Field(default=60000, ge=10000)
    min_replicas_to_write: int = Field(default=1, ge=0)
    maxmemory: str = "200mb"
    storage: StorageV = StorageV()
    anti_affinity: Spread = "preferred"
    resources: ResourcesV = ResourcesV(cpu="100m", memory="256Mi")
    sentinel_resources: ResourcesV = ResourcesV(cpu="50m", memory="64Mi")
    proxy_resources: ResourcesV = ResourcesV(cpu="50m", memory="64Mi")
    exporter_resources: ResourcesV = ResourcesV(cpu="20m", memory="32Mi")
    peer_watch_resources: ResourcesV = ResourcesV(cpu="20m", memory="32Mi")
    proxies: int = Field(default=2, ge=1, le=5)
    # HAProxy's resolver ignores resolv.conf's search list: it needs full names
    cluster_domain: ClusterDomain = "cluster.local"


def _res(r: ResourcesV) -> b.Resources:
    return b.Resources(r.cpu, r.memory, r.cpu_limit)


def passwords(
    existing: dict[str, Sensitive[str]], gen: b.PasswordSource
) -> dict[str, Sensitive[str]]:
    """Keep the stored password; make one only when there is none."""
    return {"password": existing.get("password") or gen.password()}


# -- scripts (in the ConfigMap: no secrets in them) ------------------------------

FIND_PRIMARY = r"""#!/bin/sh
# Prints the current primary's host name: what the Sentinels say, else a
# peer that reports role:master with replicas attached, else nothing.
export REDISCLI_AUTH="$(cat /etc/redis-auth/password)"
for i in 1 2 3; do
  m="$(redis-cli -h "$SENTINEL_SERVICE" -p 26379 --raw sentinel get-master-addr-by-name mymaster 2>/dev/null | head -n 1)"
  if [ -n "$m" ]; then echo "$m"; exit 0; fi
  sleep 1
done
i=0
while [ "$i" -lt "$REPLICAS" ]; do
  h="redis-$i.$HEADLESS"
  if redis-cli -h "$h" -p 6379 info replication 2>/dev/null | grep -q '^role:master'; then
    echo "$h"; exit 0
  fi
  i=$((i + 1))
done
"""

START_REDIS = r"""#!/bin/sh
set -eu
me="$(cat /etc/hostname).$HEADLESS"
umask 077
conf=/run/redis/redis.conf
# a restarted container finds the previous start's file (0600, its own)
rm -f "$conf"
cat /etc/redis-config/redis.conf >"$conf"
pw="$(cat /etc/redis-auth/password)"
printf 'requirepass "%s"\nmasterauth "%s"\nreplica-announce-ip %s\n' "$pw" "$pw" "$me" >>"$conf"
primary="$(sh /etc/redis-config/find-primary.sh || true)"
if [ -z "$primary" ]; then
  # nobody is primary yet: a new cluster, pod 0 starts as primary
  primary="redis-0.$HEADLESS"
fi
if [ "$primary" != "$me" ]; then
  printf 'replicaof %s 6379\n' "$primary" >>"$conf"
fi
exec redis-server "$conf"
"""

START_SENTINEL = r"""#!/bin/sh
set -eu
me="$(cat /etc/hostname).$SENTINEL_HEADLESS"
# one ID on every start (a new one each time left a stale voter in its peers'
# tables: with one Sentinel of three down, no leader could be elected)
id="$(cat /etc/hostname | sha1sum | cut -c1-40)"
umask 077
conf=/run/sentinel/sentinel.conf
rm -f "$conf"
pw="$(cat /etc/redis-auth/password)"
primary="$(sh /etc/redis-config/find-primary.sh || true)"
[ -n "$primary" ] || primary="redis-0.$HEADLESS"
cat /etc/redis-config/sentinel.conf >"$conf"
{
  printf 'sentinel myid %s\n' "$id"
  printf 'sentinel announce-ip %s\n' "$me"
  printf 'sentinel monitor mymaster %s 6379 %s\n' "$primary" "$QUORUM"
  printf 'sentinel down-after-milliseconds mymaster %s\n' "$DOWN_AFTER_MS"
  printf 'sentinel failover-timeout mymaster %s\n' "$FAILOVER_TIMEOUT_MS"
  printf 'sentinel parallel-syncs mymaster 1\n'
  printf 'sentinel auth-pass mymaster %s\n' "$pw"
  printf 'sentinel sentinel-pass %s\n' "$pw"
  printf 'requirepass "%s"\n' "$pw"
} >>"$conf"
# TILT mode (30 s without acting) only after a 10 s stall, not the default 2 s:
# a lookup sent to a DNS pod on a machine that is off blocks for the resolver's
# 1 s timeout until that pod is deleted (about 5 s), and a Sentinel that retried
# several names in one pass went into TILT for the whole failover (after 2.0 s,
# and once after 5.0 s). SENTINEL DEBUG: set at each start, not kept in the file
(
  i=0
  while [ "$i" -lt 60 ]; do
    if REDISCLI_AUTH="$pw" redis-cli --no-auth-warning -p 26379 sentinel debug tilt-trigger "$TILT_TRIGGER_MS" 2>/dev/null | grep -q OK; then
      exit 0
    fi
    i=$((i + 1))
    sleep 1
  done
) &
exec redis-sentinel "$conf"
"""

START_PROXY = r"""#!/bin/sh
set -eu
umask 077
pw="$(cat /etc/redis-auth/password)"
sed "s/@PASSWORD@/$pw/" /etc/redis-config/haproxy.cfg >/run/haproxy/haproxy.cfg
exec haproxy -W -db -f /run/haproxy/haproxy.cfg
"""

# resolver options of the Redis and Sentinel pods (see the top)
QUICK_DNS = (("ndots", "1"), ("timeout", "1"), ("attempts", "1"))

READY = (
    "sh",
    "-c",
    'REDISCLI_AUTH="$(cat /etc/redis-auth/password)" redis-cli -p 6379 ping | grep -q PONG',
)


def _redis_conf(v: RedisValues, cluster: bool) -> str:
    lines = [
        "port 6379",
        "bind 0.0.0.0",
        "dir /data",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        f"maxmemory {v.maxmemory}",
        "maxmemory-policy noeviction",
        "replica-read-only yes",
    ]
    if cluster:
        lines += [
            "cluster-enabled yes",
            "cluster-config-file /data/nodes.conf",
            "cluster-node-timeout 5000",
            "cluster-preferred-endpoint-type hostname",
        ]
    else:
        lines += [
            f"min-replicas-to-write {v.min_replicas_to_write}",
            "min-replicas-max-lag 10",
        ]
    return "\n".join(lines) + "\n"


SENTINEL_CONF = """port 26379
dir /run/sentinel
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
"""


def _haproxy_cfg(v: RedisValues, headless: str) -> str:
    servers = "\n".join(
        f"    server redis-{i} redis-{i}.{headless}:6379 "
        "check inter 1s fall 1 rise 1 "
        "resolvers cluster init-addr none on-marked-down shutdown-sessions"
        for i in range(v.replicas)
    )
    return f"""global
    maxconn 4000

resolvers cluster
    parse-resolv-conf
    hold valid 1s
    hold obsolete 1s
    # a lookup that times out (sent to a DNS pod on a machine that is off) keeps
    # the last address: a pod's address changes only when it is re-created, and
    # then its name answers with the new one
    hold timeout 300s
    hold other 300s

defaults
    mode tcp
    timeout connect 2s
    # pub/sub connections stay idle for long
    timeout client 24h
    timeout server 24h
    timeout check 1s

frontend health
    mode http
    bind :8404
    monitor-uri /healthz

frontend redis
    bind :6379
    default_backend primary

backend primary
    option tcp-check
    tcp-check connect
    tcp-check send AUTH\\ @PASSWORD@\\r\\n
    tcp-check expect string +OK
    tcp-check send info\\ replication\\r\\n
    tcp-check expect string role:master
    tcp-check send QUIT\\r\\n
    tcp-check expect string +OK
{servers}
"""


def _peer_watch_rbac(ns: str) -> tuple[b.Obj, ...]:
    """The proxies' sidecar lists the proxy pods and deletes a dead one.
    RBAC cannot narrow ``delete`` to some labels: the token may delete any pod
    of the namespace; peer_watch.py deletes only pods of its selector, by uid."""
    lbls = b.labels(APP, "rbac")
    name = "redis-proxy"
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": b.meta(name, ns, lbls)}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": b.meta(name, ns, lbls),
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "delete"]}],
    }
    return account, role, b.role_binding(name, ns, lbls, name, name, ns)


def _metrics_service(ns: str, lbls: dict[str, str], sel: dict[str, str]) -> b.Obj:
    """The monitoring convention (docs/monitoring.md): every Redis server's
    redis_exporter, not-ready servers too (they still report why)."""
    return b.service(
        "redis-metrics", ns, lbls, sel, [("metrics", 9121)], headless=True, publish_not_ready=True
    )


def build(v: RedisValues, images: dict[str, str], pw: dict[str, Sensitive[str]]) -> b.Rendered:
    if v.topology == "cluster":
        return _build_cluster(v, images, pw)
    ns = v.namespace
    # full names: with ndots:1 (below) they are looked up once, as they are
    headless = f"redis-headless.{ns}.svc.{v.cluster_domain}"
    s_headless = f"redis-sentinel-headless.{ns}.svc.{v.cluster_domain}"
    lr, sr = b.labels(APP, "server"), b.selector(APP, "server")
    ls, ss = b.labels(APP, "sentinel"), b.selector(APP, "sentinel")
    lp, sp = b.labels(APP, "proxy"), b.selector(APP, "proxy")
    common = b.labels(APP, "config")
    cfg = b.config_map(
        "redis-config",
        ns,
        common,
        {
            "redis.conf": _redis_conf(v, cluster=False),
            "sentinel.conf": SENTINEL_CONF,
            "haproxy.cfg": _haproxy_cfg(v, headless),
            "find-primary.sh": FIND_PRIMARY,
            "start-redis.sh": START_REDIS,
            "start-sentinel.sh": START_SENTINEL,
            "start-proxy.sh": START_PROXY,
            PEER_WATCH: peer_watch_source(),
        },
    )
    where = (
        b.env("HEADLESS", headless),
        b.env("SENTINEL_SERVICE", f"redis-sentinel.{ns}.svc.{v.cluster_domain}"),
        b.env("REPLICAS", str(v.replicas)),
    )
    vols = (
        b.volume_config("config", "redis-config"),
        b.volume_secret("auth", SECRET),
    )
    auth_mount = b.Mount("auth", "/etc/redis-auth", read_only=True)
    config_mount = b.Mount("config", "/etc/redis-config", read_only=True)
    redis = b.Container(
        name="redis",
        image=images["redis"],
        resources=_res(v.resources),
        command=("sh", "/etc/redis-config/start-redis.sh"),
        ports=(("redis", 6379),),
        env=where,
        mounts=(
            b.Mount("data", "/data"),
            b.Mount("run", "/run/redis"),
            config_mount,
            auth_mount,
        ),
        readiness=b.Probe("exec", READY, period=2, timeout=2, failures=2),
        liveness=b.Probe("tcp", 6379, period=10, timeout=3, failures=6, initial_delay=10),
    )
    exporter = b.Container(
        name="exporter",
        image=images["redis-exporter"],
        resources=_res(v.exporter_resources),
        ports=(("metrics", 9121),),
        env=(
            b.env("REDIS_ADDR", "redis://127.0.0.1:6379"),
            b.env_secret("REDIS_PASSWORD", SECRET, "password"),
        ),
        readiness=b.Probe("tcp", 9121, period=10),
        liveness=b.Probe("tcp", 9121, period=20, failures=3),
    )
    server_set = b.statefulset(
        "redis",
        ns,
        lr,
        sr,
        replicas=v.replicas,
        service_name="redis-headless",
        pod=b.PodSpec(
            containers=(redis, exporter),
            volumes=(*vols, b.volume_memory("run")),
            affinity=b.anti_affinity(sr, v.anti_affinity),
            dns_options=QUICK_DNS,
        ),
        claims=(b.claim_template("data", v.storage.size, v.storage.storage_class),),
        # the Sentinels, not the ordinal, decide who is primary: a deleted replica
        # must come back even while the old primary's machine is down
        parallel=True,
        pod_annotations={"prometheus.io/scrape": "true", "prometheus.io/port": "9121"},
    )
    sentinel = b.Container(
        name="sentinel",
        image=images["redis"],
        resources=_res(v.sentinel_resources),
        command=("sh", "/etc/redis-config/start-sentinel.sh"),
        ports=(("sentinel", 26379),),
        env=(
            *where,
            b.env("SENTINEL_HEADLESS", s_headless),
            b.env("QUORUM", str(v.sentinels // 2 + 1)),
            b.env("DOWN_AFTER_MS", str(v.down_after_ms)),
            b.env("FAILOVER_TIMEOUT_MS", str(v.failover_timeout_ms)),
            b.env("TILT_TRIGGER_MS", "10000"),
        ),
        mounts=(b.Mount("run", "/run/sentinel"), config_mount, auth_mount),
        readiness=b.Probe(
            "exec",
            (
                "sh",
                "-c",
                'REDISCLI_AUTH="$(cat /etc/redis-auth/password)" '
                "redis-cli -p 26379 ping | grep -q PONG",
            ),
            period=5,
        ),
        liveness=b.Probe("tcp", 26379, period=10, failures=6, initial_delay=10),
    )
    sentinel_set = b.statefulset(
        "redis-sentinel",
        ns,
        ls,
        ss,
        replicas=v.sentinels,
        service_name="redis-sentinel-headless",
        pod=b.PodSpec(
            containers=(sentinel,),
            volumes=(*vols, b.volume_memory("run")),
            affinity=b.anti_affinity(ss, v.anti_affinity),
            dns_options=QUICK_DNS,
        ),
        parallel=True,
    )
    proxy = b.Container(
        name="haproxy",
        image=images["haproxy"],
        resources=_res(v.proxy_resources),
        command=("sh", "/etc/redis-config/start-proxy.sh"),
        ports=(("redis", 6379), ("health", 8404)),
        mounts=(b.Mount("run", "/run/haproxy"), config_mount, auth_mount),
        readiness=b.Probe("http", "8404:/healthz", period=2),
        liveness=b.Probe("http", "8404:/healthz", period=10, failures=3),
    )
    watch = b.Container(
        name="peer-watch",
        image=images[PEER_WATCH_IMAGE],
        resources=_res(v.peer_watch_resources),
        command=(
            "python3",
            f"/etc/redis-config/{PEER_WATCH}",
            f"--selector={','.join(f'{k}={x}' for k, x in sp.items())}",
            "--port=6379",
            f"--health-port={PEER_WATCH_HEALTH}",
        ),
        ports=(("peer-health", PEER_WATCH_HEALTH),),
        mounts=(config_mount,),
        readiness=b.Probe("http", f"{PEER_WATCH_HEALTH}:/health", period=10),
        liveness=b.Probe("http", f"{PEER_WATCH_HEALTH}:/health", period=10, failures=3),
    )
    proxy_deploy = b.deployment(
        "redis-proxy",
        ns,
        lp,
        sp,
        replicas=v.proxies,
        pod=b.PodSpec(
            containers=(proxy, watch) if v.proxies > 1 else (proxy,),
            volumes=(*vols, b.volume_memory("run")),
            affinity=b.anti_affinity(sp, "preferred"),
            service_account="redis-proxy" if v.proxies > 1 else None,
        ),
    )
    objects = (
        b.namespace(ns, APP),
        *(_peer_watch_rbac(ns) if v.proxies > 1 else ()),
        b.secret(SECRET, ns, b.labels(APP, "auth"), pw),
        cfg,
        b.service(
            "redis-headless", ns, lr, sr, [("redis", 6379)], headless=True, publish_not_ready=True
        ),
        b.service(
            "redis-sentinel-headless",
            ns,
            ls,
            ss,
            [("sentinel", 26379)],
            headless=True,
            publish_not_ready=True,
        ),
        b.service("redis", ns, lp, sp, [("redis", 6379)]),
        b.service("redis-sentinel", ns, ls, ss, [("sentinel", 26379)]),
        _metrics_service(ns, lr, sr),
        server_set,
        sentinel_set,
        proxy_deploy,
        b.pdb("redis", ns, lr, sr),
        b.pdb("redis-sentinel", ns, ls, ss),
        b.pdb("redis-proxy", ns, lp, sp),
    )
    return b.Rendered(
        app=APP,
        namespace=ns,
        objects=objects,
        storage_classes=(v.storage.storage_class,),
        required_spread=max(v.replicas, v.sentinels) if v.anti_affinity == "required" else 0,
    )


CLUSTER_CREATE = r"""#!/bin/sh
set -eu
export REDISCLI_AUTH="$(cat /etc/redis-auth/password)"
if redis-cli -h "redis-cluster-0.$HEADLESS" cluster info | grep -q '^cluster_state:ok'; then
  echo "the cluster exists"; exit 0
fi
nodes=""
i=0
while [ "$i" -lt "$NODES" ]; do
  h="redis-cluster-$i.$HEADLESS"
  until redis-cli -h "$h" ping 2>/dev/null | grep -q PONG; do sleep 2; done
  ip="$(getent hosts "$h" | cut -d' ' -f1)"
  nodes="$nodes $ip:6379"
  i=$((i + 1))
done
redis-cli --cluster create $nodes --cluster-replicas 1 --cluster-yes
"""

START_CLUSTER_NODE = r"""#!/bin/sh
set -eu
umask 077
conf=/run/redis/redis.conf
rm -f "$conf"
cat /etc/redis-config/redis.conf >"$conf"
pw="$(cat /etc/redis-auth/password)"
printf 'requirepass "%s"\nmasterauth "%s"\ncluster-announce-hostname %s\n' \
  "$pw" "$pw" "$(cat /etc/hostname).$HEADLESS" >>"$conf"
exec redis-server "$conf"
"""


def _build_cluster(
    v: RedisValues, images: dict[str, str], pw: dict[str, Sensitive[str]]
) -> b.Rendered:
    ns = v.namespace
    nodes = 6
    headless = f"redis-cluster-headless.{ns}.svc"
    lr, sr = b.labels(APP, "cluster-node"), b.selector(APP, "cluster-node")
    lj = b.labels(APP, "cluster-create")
    cfg = b.config_map(
        "redis-config",
        ns,
        b.labels(APP, "config"),
        {
            "redis.conf": _redis_conf(v, cluster=True),
            "start-node.sh": START_CLUSTER_NODE,
            "create-cluster.sh": CLUSTER_CREATE,
        },
    )
    where = (b.env("HEADLESS", headless), b.env("NODES", str(nodes)))
    config_mount = b.Mount("config", "/etc/redis-config", read_only=True)
    auth_mount = b.Mount("auth", "/etc/redis-auth", read_only=True)
    vols = (b.volume_config("config", "redis-config"), b.volume_secret("auth", SECRET))
    node = b.Container(
        name="redis",
        image=images["redis"],
        resources=_res(v.resources),
        command=("sh", "/etc/redis-config/start-node.sh"),
        ports=(("redis", 6379), ("bus", 16379)),
        env=where,
        mounts=(b.Mount("data", "/data"), b.Mount("run", "/run/redis"), config_mount, auth_mount),
        readiness=b.Probe("exec", READY, period=2, timeout=2, failures=2),
        liveness=b.Probe("tcp", 6379, period=10, failures=6, initial_delay=10),
    )
    exporter = b.Container(
        name="exporter",
        image=images["redis-exporter"],
        resources=_res(v.exporter_resources),
        ports=(("metrics", 9121),),
        env=(
            b.env("REDIS_ADDR", "redis://127.0.0.1:6379"),
            b.env_secret("REDIS_PASSWORD", SECRET, "password"),
        ),
        readiness=b.Probe("tcp", 9121, period=10),
        liveness=b.Probe("tcp", 9121, period=20),
    )
    sts = b.statefulset(
        "redis-cluster",
        ns,
        lr,
        sr,
        replicas=nodes,
        service_name="redis-cluster-headless",
        pod=b.PodSpec(
            containers=(node, exporter),
            volumes=(*vols, b.volume_memory("run")),
            affinity=b.anti_affinity(sr, v.anti_affinity),
        ),
        claims=(b.claim_template("data", v.storage.size, v.storage.storage_class),),
        parallel=True,
    )
    create = b.Container(
        name="create",
        image=images["redis"],
        resources=_res(v.sentinel_resources),
        command=("sh", "/etc/redis-config/create-cluster.sh"),
        env=where,
        mounts=(config_mount, auth_mount),
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": b.meta(
            "redis-cluster-create",
            ns,
            lj,
            {
                "kubeprem.io/accept": "KP022: a one-shot Job has no traffic to gate; "
                "KP023: it waits for the nodes and ends"
            },
        ),
        "spec": {
            "backoffLimit": 10,
            "template": {
                "metadata": {"labels": lj},
                "spec": b.PodSpec(containers=(create,), volumes=vols, restart_never=True).to_dict(),
            },
        },
    }
    objects = (
        b.namespace(ns, APP),
        b.secret(SECRET, ns, b.labels(APP, "auth"), pw),
        cfg,
        b.service(
            "redis-cluster-headless",
            ns,
            lr,
            sr,
            [("redis", 6379), ("bus", 16379)],
            headless=True,
            publish_not_ready=True,
        ),
        b.service("redis-cluster", ns, lr, sr, [("redis", 6379)]),
        _metrics_service(ns, lr, sr),
        sts,
        job,
        b.pdb("redis-cluster", ns, lr, sr),
    )
    return b.Rendered(
        app=APP,
        namespace=ns,
        objects=objects,
        storage_classes=(v.storage.storage_class,),
        required_spread=nodes if v.anti_affinity == "required" else 0,
    )


__all__ = ["APP", "SECRET", "RedisValues", "build", "passwords"]

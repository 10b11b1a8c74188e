"""One BigBlueButton server: its namespace, two pods on one node, its Redis and PostgreSQL.

Called by ``build`` once per server of the values file. A server lives in
namespace ``bbb-<name>`` and is pinned to the one node labelled
``kubeprem.io/bbb-server=<name>``:

- StatefulSet ``bbb`` (1 replica, pod network): nginx (host ports 80/443),
  bbb-web, akka-apps, the GraphQL server (Hasura), middleware and actions,
  Etherpad, bbb-pads, export-annotations, recording processing; an init
  container (re)creates the databases first.
- StatefulSet ``media`` (1 replica, the node's network): FreeSWITCH,
  fsesl-akka, bbb-webrtc-sfu (mediasoup), bbb-webrtc-recorder, coturn. Why
  each needs the node's network: ``ports.HOST_NETWORK``.
- Both mount one claim ``server-data`` (subPaths: /var/bigbluebutton,
  /var/freeswitch/meetings, /var/mediasoup, /var/lib/bbb-webrtc-recorder):
  ReadWriteOnce is per node, and both pods are pinned to the same node.
- Redis and PostgreSQL from ``kubeprem.apps.redis`` / ``postgresql`` in the
  same namespace (Service ``redis`` always reaches the primary; Service
  ``postgresql`` is Patroni's leader). The init container recreates
  ``bbb_graphql`` at every start of the server and keeps ``hasura_app``.
- NetworkPolicies: only this server's pods (and, by address block, its
  host-network media pod) reach its Redis proxy; only the ``bbb`` pod
  reaches PostgreSQL; the databases' own pods reach each other.
"""

from __future__ import annotations

import json
from typing import Any

from kubeprem.apps import base as b
from kubeprem.apps import postgresql, redis
from kubeprem.apps.bigbluebutton import ports as p
from kubeprem.apps.bigbluebutton.values import BBBValues, ServerV, server_namespace
from kubeprem.apps.values import ResourcesV
from kubeprem.sensitive import Sensitive

APP = "bigbluebutton"
NODE_LABEL = "kubeprem.io/bbb-server"
SERVER_SECRET = "bbb-auth"
DATA = "server-data"
FOLDERS = {
    "bigbluebutton": "/var/bigbluebutton",
    "freeswitch": "/var/freeswitch/meetings",
    "mediasoup": "/var/mediasoup",
    "webrtc-recorder": "/var/lib/bbb-webrtc-recorder",
}
SPOOL = "/mnt/scalelite-recordings"
FS_CAPS = ["IPC_LOCK", "NET_ADMIN", "NET_RAW", "NET_BROADCAST", "SYS_NICE", "SYS_RESOURCE"]
# containers without a port to probe: queue workers whose health is their queue
WORKERS = {"export-annotations", "recordings", "fsesl-akka", "webrtc-recorder"}

DB_INIT = r"""set -eu
export PGPASSWORD="$PG_SUPERUSER_PASSWORD"
psql_() { psql -h "$PGHOST" -U postgres -v ON_ERROR_STOP=1 -d postgres "$@"; }
until psql_ -c 'select 1' >/dev/null 2>&1; do echo "waiting for $PGHOST"; sleep 2; done
psql_ -v pw="$DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE bbb LOGIN PASSWORD %L', :'pw')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bbb') \gexec
SELECT format('ALTER ROLE bbb PASSWORD %L', :'pw') \gexec
SELECT 'CREATE DATABASE hasura_app OWNER bbb'
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'hasura_app') \gexec
-- the live-meeting projection starts empty with every start of the server
DROP DATABASE IF EXISTS bbb_graphql WITH (FORCE);
CREATE DATABASE bbb_graphql OWNER bbb;
SQL
echo "hasura_app kept, bbb_graphql recreated"
"""

COTURN_START = r"""#!/bin/sh
set -eu
umask 077
conf=/run/coturn/turnserver.conf
{
  printf 'listening-port=%s\ntls-listening-port=%s\n' "$TURN_PORT" "$TURN_TLS_PORT"
  printf 'listening-ip=%s\nrelay-ip=%s\n' "$HOST_IP" "$HOST_IP"
  printf 'external-ip=%s/%s\n' "$PUBLIC_IP" "$HOST_IP"
  printf 'min-port=%s\nmax-port=%s\n' "$RELAY_MIN" "$RELAY_MAX"
  printf 'realm=%s\nuse-auth-secret\nstatic-auth-secret=%s\n' "$REALM" "$(cat /etc/bbb-auth/turn-secret)"
  printf 'cert=/etc/bbb-tls/tls.crt\npkey=/etc/bbb-tls/tls.key\n'
  printf 'fingerprint\nno-cli\nno-multicast-peers\nno-tlsv1\nno-tlsv1_1\nlog-file=stdout\n'
  # never relay into the site's own networks: TURN would be a way in
  for net in 0.0.0.0-0.255.255.255 10.0.0.0-10.255.255.255 100.64.0.0-100.127.255.255 \
      127.0.0.0-127.255.255.255 169.254.0.0-169.254.255.255 172.16.0.0-172.31.255.255 \
      192.168.0.0-192.168.255.255; do
    printf 'denied-peer-ip=%s\n' "$net"
  done
  printf 'allowed-peer-ip=%s\n' "$PUBLIC_IP"
} >"$conf"
exec turnserver -c "$conf"
"""


def _res(r: ResourcesV) -> b.Resources:
    return b.Resources(r.cpu, r.memory, r.cpu_limit)


def _sec(key: str, name: str | None = None) -> b.Obj:
    return b.env_secret(name or key.upper().replace("-", "_"), SERVER_SECRET, key)


def _data(folder: str, read_only: bool = False) -> b.Mount:
    return b.Mount(DATA, FOLDERS[folder], read_only=read_only, sub_path=folder)


def labels(component: str, server: str) -> dict[str, str]:
    return {**b.labels(APP, component, server), NODE_LABEL: server}


def server_objects(
    v: BBBValues, s: ServerV, images: dict[str, str], master_pw: dict[str, Sensitive[str]]
) -> list[b.Obj]:
    """Every object of server ``s`` (its namespace first). ``master_pw``: its passwords."""
    ns = server_namespace(s)
    host = v.host_of(s)
    redis_host = f"redis.{ns}.svc"
    pg_host = f"postgresql.{ns}.svc"
    common_env = (
        b.env("DOMAIN", host),
        b.env("REDIS_HOST", redis_host),
        b.env("REDIS_PORT", "6379"),
        _sec("redis-password"),
    )
    app_containers = _app_containers(v, s, host, pg_host, common_env)
    media_containers = _media_containers(v, s, host, common_env)
    lab, sel = labels("server", s.name), b.selector(APP, "server")
    lme, sme = labels("media", s.name), b.selector(APP, "media")
    pin = {NODE_LABEL: s.name}
    everyone = [server_namespace(x) for x in v.servers]
    vols_app = (
        {"name": DATA, "persistentVolumeClaim": {"claimName": DATA}},
        _tls(v),
        {
            "name": "spool",
            "nfs": {"server": v.recordings.nfs_server, "path": v.recordings.nfs_path},
        },
    )
    app_pod = b.PodSpec(
        containers=app_containers,
        volumes=vols_app,
        affinity=_spread(lab, sel, everyone),
        termination_grace=60,
    ).to_dict()
    app_pod["initContainers"] = [_db_init(v, pg_host, images).to_dict()]
    _pod_common(app_pod, pin)
    for c in app_pod["containers"]:
        if c["name"] == "nginx":
            _cap(c, ["NET_BIND_SERVICE"])
            for port in c["ports"]:
                port["hostPort"] = port["containerPort"]
    vols_media = (
        {"name": DATA, "persistentVolumeClaim": {"claimName": DATA}},
        _tls(v),
        b.volume_secret("auth", SERVER_SECRET),
        b.volume_config("config", "media-config", 0o555),
        b.volume_memory("run"),
    )
    media_pod = b.PodSpec(
        containers=media_containers,
        volumes=vols_media,
        affinity=_spread(lme, sme, everyone),
        # FreeSWITCH and mediasoup end their calls cleanly on SIGTERM
        termination_grace=120,
    ).to_dict()
    _pod_common(media_pod, pin)
    media_pod["hostNetwork"] = True
    media_pod["dnsPolicy"] = "ClusterFirstWithHostNet"  # Services still resolve
    for c in media_pod["containers"]:
        _media_security(c)
    accept_workers = (
        "KP022, KP023: {names} are queue workers without a port (their health is their "
        "Redis queue), every other container is probed"
    )
    app_set = b.statefulset(
        "bbb",
        ns,
        lab,
        sel,
        replicas=1,
        service_name="bbb-headless",
        pod=b.PodSpec(()),
    )
    app_set["spec"]["template"]["spec"] = app_pod
    app_set["metadata"]["annotations"] = {
        "kubeprem.io/accept": accept_workers.format(names="export-annotations and recordings")
        + "\nKP050: one pod per server by design, a server is drained through Scalelite, "
        "never evicted while meetings run\n"
        "KP081: nginx adds NET_BIND_SERVICE for ports 80 and 443",
    }
    media_set = b.statefulset(
        "media", ns, lme, sme, replicas=1, service_name="media-headless", pod=b.PodSpec(())
    )
    media_set["spec"]["template"]["spec"] = media_pod
    media_set["metadata"]["annotations"] = {
        "kubeprem.io/accept": accept_workers.format(names="fsesl-akka and webrtc-recorder")
        + "\nKP082: media must be reached at the node's address: "
        + " / ".join(f"{k} ({why})" for k, why in p.HOST_NETWORK.items())
        + "\nKP081: FreeSWITCH needs "
        + ", ".join(FS_CAPS)
        + " (real-time audio, RTP sockets), mediasoup needs IPC_LOCK (locked memory)\n"
        "KP050: one pod per server by design, drained through Scalelite, never evicted "
        "while meetings run",
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": b.meta(DATA, ns, labels("data", s.name)),
        "spec": b.claim_template(DATA, v.storage.size, v.storage.storage_class)["spec"],
    }
    secret_pw = {k: master_pw[k] for k in master_pw}
    media_config = b.config_map(
        "media-config", ns, labels("config", s.name), {"coturn-start.sh": COTURN_START}
    )
    redis_objs = redis.build(
        redis.RedisValues(
            namespace=ns,
            storage=v.redis_storage,
            cluster_domain=v.cluster_domain,
            # one Redis per node is not possible with one server per node: spread where it can
            anti_affinity="preferred",
        ),
        images,
        {"password": master_pw["redis-password"]},
    ).objects
    pg_objs = postgresql.build(
        postgresql.PostgresValues(namespace=ns, storage=v.postgresql_storage),
        images,
        {
            "superuser-password": master_pw["postgresql-superuser"],
            "replication-password": master_pw["postgresql-replication"],
        },
    ).objects
    ns_obj = b.namespace(ns, APP)
    ns_obj["metadata"]["labels"][NODE_LABEL] = s.name
    objects: list[b.Obj] = [
        ns_obj,
        b.secret(SERVER_SECRET, ns, labels("auth", s.name), secret_pw),
        media_config,
        claim,
        b.service("bbb-headless", ns, lab, sel, [("http", 80)], headless=True),
        b.service("media-headless", ns, lme, sme, [("sfu", p.SFU_WS)], headless=True),
        b.service("bbb", ns, lab, sel, [("http", 80), ("https", 443)]),
        app_set,
        media_set,
        *_policies(v, ns, s.name),
    ]
    objects += [o for o in (*redis_objs, *pg_objs) if o["kind"] != "Namespace"]
    return objects


def _pod_common(pod: b.Obj, pin: dict[str, str]) -> None:
    pod["nodeSelector"] = dict(pin)
    # the upstream images run as root (as in the compose project); every
    # container still drops all capabilities except the ones named per container
    pod["securityContext"] = {"fsGroup": b.FS_GROUP, "seccompProfile": {"type": "RuntimeDefault"}}


def _spread(lbls: dict[str, str], sel: dict[str, str], namespaces: list[str]) -> b.Obj:
    """Never two servers' pods of one kind on one node (host ports, media ranges)."""
    return {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": dict(sel)},
                    "namespaces": sorted(namespaces),
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }


def _cap(c: b.Obj, caps: list[str]) -> None:
    c["securityContext"]["capabilities"]["add"] = list(caps)


def _media_security(c: b.Obj) -> None:
    name = c["name"]
    if name == "freeswitch":
        _cap(c, FS_CAPS)
    elif name == "webrtc-sfu":
        _cap(c, ["IPC_LOCK"])
        # mediasoup's workers: the compose project runs it seccomp-unconfined
        c["securityContext"]["seccompProfile"] = {"type": "Unconfined"}


def _app_containers(
    v: BBBValues, s: ServerV, host: str, pg_host: str, common: tuple[b.Obj, ...]
) -> tuple[b.Container, ...]:
    api_secret = _sec("api-secret", "SHARED_SECRET")
    turn = (
        b.env("STUN_SERVER", f"stun:{s.public_ipv4}:{p.TURN_PORT}"),
        b.env("TURN_SERVER", f"turns:{host}:{p.TURN_TLS_PORT}?transport=tcp"),
        _sec("turn-secret", "TURN_SECRET"),
    )
    hasura_db = (
        _sec("db-password", "PGPASSWORD"),
        b.env(
            "HASURA_GRAPHQL_METADATA_DATABASE_URL",
            f"postgres://bbb:$(PGPASSWORD)@{pg_host}:5432/hasura_app",
        ),
        b.env(
            "HASURA_GRAPHQL_DATABASE_URL",
            f"postgres://bbb:$(PGPASSWORD)@{pg_host}:5432/bbb_graphql",
        ),
    )
    etherpad_key = _sec("etherpad-api-key")
    rec = "true" if v.enable_recording else "false"

    def c(
        name: str,
        ports: tuple[tuple[str, int], ...] = (),
        env: tuple[b.Obj, ...] = (),
        mounts: tuple[b.Mount, ...] = (),
        ready: b.Probe | None = None,
        live: b.Probe | None = None,
    ) -> b.Container:
        if ready is None and ports and name not in WORKERS:
            ready = b.Probe("tcp", ports[0][1], period=5)
            live = live or b.Probe("tcp", ports[0][1], period=20, failures=6, initial_delay=30)
        return b.Container(
            name=name,
            image=v.image(name),
            resources=_res(v.size(name)),
            ports=ports,
            env=(*common, *env),
            mounts=mounts,
            readiness=ready,
            liveness=live,
        )

    return (
        c(
            "nginx",
            (("http", 80), ("https", 443)),
            (b.env_field("HOST_IP", "status.hostIP"), b.env("SFU_WS_PORT", str(p.SFU_WS))),
            (_data("bigbluebutton", read_only=True), b.Mount("tls", "/etc/nginx/ssl", True)),
        ),
        c(
            "bbb-web",
            (("api", 8090),),
            (api_secret, *turn, b.env("ENABLE_RECORDING", rec)),
            (_data("bigbluebutton"), _data("freeswitch")),
            ready=b.Probe("http", "8090:/bigbluebutton/api", period=10, timeout=5),
            live=b.Probe(
                "http", "8090:/bigbluebutton/api", period=20, failures=6, initial_delay=120
            ),
        ),
        c("akka-apps", (("http", 8901),), (api_secret,), (_data("freeswitch"),)),
        c(
            "graphql-server",
            (("hasura", 8085),),
            (
                *hasura_db,
                _sec("hasura-admin-secret", "HASURA_GRAPHQL_ADMIN_SECRET"),
                b.env("HASURA_GRAPHQL_SERVER_PORT", "8085"),
            ),
            ready=b.Probe("http", "8085:/healthz", period=5),
            live=b.Probe("http", "8085:/healthz", period=20, failures=6, initial_delay=30),
        ),
        c(
            "graphql-middleware",
            (("ws", 8378),),
            (b.env("HASURA_WS_URL", "ws://127.0.0.1:8085/v1/graphql"),),
        ),
        c(
            "graphql-actions",
            (("http", 8093),),
            (_sec("hasura-admin-secret", "HASURA_GRAPHQL_ADMIN_SECRET"),),
        ),
        c("etherpad", (("http", 9001),), (etherpad_key,)),
        c("bbb-pads", (("http", 9002),), (etherpad_key,)),
        c("export-annotations", mounts=(_data("bigbluebutton"),)),
        c(
            "recordings",
            env=(api_secret, b.env("ENABLE_RECORDING", rec), b.env("SCALELITE_SPOOL", SPOOL)),
            mounts=(
                *(_data(f) for f in FOLDERS),
                b.Mount("spool", SPOOL),
            ),
        ),
    )


def _tls(v: BBBValues) -> b.Obj:
    # optional: the pods start without it and nginx serves HTTP until it exists
    return {
        "name": "tls",
        "secret": {"secretName": v.tls_secret, "defaultMode": 0o400, "optional": True},
    }


def _db_init(v: BBBValues, pg_host: str, images: dict[str, str]) -> b.Container:
    return b.Container(
        name="db-init",
        image=images["postgresql"],  # the catalogue's: psql of the server's major version
        resources=_res(v.size("db-init")),
        command=("sh", "-c", DB_INIT),
        env=(
            b.env("PGHOST", pg_host),
            _sec("postgresql-superuser", "PG_SUPERUSER_PASSWORD"),
            _sec("db-password", "DB_PASSWORD"),
        ),
    )


def _media_containers(
    v: BBBValues, s: ServerV, host: str, common: tuple[b.Obj, ...]
) -> tuple[b.Container, ...]:
    host_ip = b.env_field("HOST_IP", "status.hostIP")
    esl = _sec("esl-password", "ESL_PASSWORD")
    listen = json.dumps([{"ip": "$(HOST_IP)", "announcedIp": s.public_ipv4}])

    def c(
        name: str, env: tuple[b.Obj, ...], mounts: tuple[b.Mount, ...] = (), **kw: Any
    ) -> b.Container:
        return b.Container(
            name=name,
            image=v.image(name),
            resources=_res(v.size(name)),
            env=(host_ip, *common, *env),
            mounts=mounts,
            **kw,
        )

    fs_check = (
        "sh",
        "-c",
        'fs_cli -H "$HOST_IP" -P 8021 -p "$ESL_PASSWORD" -x status | grep -q UP',
    )
    return (
        c(
            "freeswitch",
            (
                b.env("EXTERNAL_IPv4", s.public_ipv4),
                esl,
                b.env("SOUNDS_LANGUAGE", "en-us-callie"),
            ),
            (_data("freeswitch"),),
            ports=(("sip-ws", p.FS_SIP_WS),),
            readiness=b.Probe("exec", fs_check, period=10, timeout=5),
            liveness=b.Probe("exec", fs_check, period=30, timeout=5, failures=4, initial_delay=60),
        ),
        c("fsesl-akka", (b.env("ESL_HOST", "$(HOST_IP)"), _sec("esl-password", "FSESL_PASSWORD"))),
        c(
            "webrtc-sfu",
            (
                b.env("CLIENT_HOST", "$(HOST_IP)"),
                b.env("FREESWITCH_IP", "127.0.0.1"),
                b.env("FREESWITCH_SIP_IP", "$(HOST_IP)"),
                b.env("ESL_IP", "$(HOST_IP)"),
                esl,
                b.env("MS_WEBRTC_LISTEN_IPS", listen),
                b.env(
                    "MS_RTP_LISTEN_IP", json.dumps({"ip": "127.0.0.1", "announcedIp": "127.0.0.1"})
                ),
                b.env("MS_RTC_MIN_PORT", str(p.SFU_RTC[0])),
                b.env("MS_RTC_MAX_PORT", str(p.SFU_RTC[1])),
            ),
            (_data("mediasoup"),),
            ports=(("ws", p.SFU_WS),),
            readiness=b.Probe("tcp", p.SFU_WS, period=5),
            liveness=b.Probe("tcp", p.SFU_WS, period=20, failures=6, initial_delay=30),
        ),
        c(
            "webrtc-recorder",
            (b.env("RECORDER_ANNOUNCED_IP", "$(HOST_IP)"),),
            (_data("webrtc-recorder"),),
        ),
        c(
            "coturn",
            (
                b.env("PUBLIC_IP", s.public_ipv4),
                b.env("REALM", host),
                b.env("TURN_PORT", str(p.TURN_PORT)),
                b.env("TURN_TLS_PORT", str(p.TURN_TLS_PORT)),
                b.env("RELAY_MIN", str(p.TURN_RELAY[0])),
                b.env("RELAY_MAX", str(p.TURN_RELAY[1])),
            ),
            (
                b.Mount("run", "/run/coturn"),
                b.Mount("config", "/etc/media-config", read_only=True),
                b.Mount("auth", "/etc/bbb-auth", read_only=True),
                b.Mount("tls", "/etc/bbb-tls", read_only=True),
            ),
            command=("sh", "/etc/media-config/coturn-start.sh"),
            ports=(("turn", p.TURN_PORT), ("turns", p.TURN_TLS_PORT)),
            readiness=b.Probe("tcp", p.TURN_PORT, period=10),
            liveness=b.Probe("tcp", p.TURN_PORT, period=30, failures=4),
        ),
    )


def _policies(v: BBBValues, ns: str, server: str) -> list[b.Obj]:
    """Ingress to this server's Redis and PostgreSQL: its own pods only."""

    def pods(component: str, app: str = APP) -> b.Obj:
        return {"podSelector": {"matchLabels": b.selector(app, component)}}

    def same_app(app: str) -> b.Obj:
        return {"podSelector": {"matchLabels": {"app.kubernetes.io/name": app}}}

    def port(n: int) -> b.Obj:
        return {"port": n, "protocol": "TCP"}

    def policy(name: str, target: b.Obj, rules: list[b.Obj]) -> b.Obj:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": b.meta(name, ns, labels("policy", server)),
            "spec": {"podSelector": target, "policyTypes": ["Ingress"], "ingress": rules},
        }

    nodes = {"ipBlock": {"cidr": v.node_cidr}}
    return [
        # the primary address (HAProxy): the bbb pod, and the media pod by the node's address
        policy(
            "redis-proxy-clients",
            {"matchLabels": b.selector("redis", "proxy")},
            [
                {"from": [pods("server"), nodes], "ports": [port(6379)]},
                {"from": [nodes], "ports": [port(8404)]},  # kubelet probes
            ],
        ),
        # Redis and Sentinel pods: each other and the proxies; metrics from anywhere
        policy(
            "redis-peers",
            {"matchLabels": {"app.kubernetes.io/name": "redis"}},
            [
                {"from": [same_app("redis")], "ports": [port(6379), port(26379)]},
                {"from": [nodes], "ports": [port(6379), port(26379)]},  # kubelet probes
                {"ports": [port(9121)]},
            ],
        ),
        policy(
            "postgresql-clients",
            {"matchLabels": {"app.kubernetes.io/name": "postgresql"}},
            [
                {"from": [pods("server")], "ports": [port(5432)]},
                {"from": [same_app("postgresql")], "ports": [port(5432), port(8008)]},
                {"from": [nodes], "ports": [port(8008)]},  # kubelet probes
                {"ports": [port(9187)]},
            ],
        ),
    ]


__all__ = ["APP", "DATA", "FOLDERS", "NODE_LABEL", "SERVER_SECRET", "labels", "server_objects"]

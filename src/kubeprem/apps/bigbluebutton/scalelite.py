"""Scalelite in front of the BigBlueButton servers: one API address for every meeting.

Called by ``build``. In namespace ``<values.namespace>``:

- Scalelite's own Redis and PostgreSQL, from ``kubeprem.apps.redis`` and
  ``postgresql`` (Redis with AOF: Scalelite keeps meeting -> server there).
- Deployments ``scalelite-api`` (2) and ``scalelite-nginx`` (2) behind the
  Service ``scalelite``; ``scalelite-poller`` and
  ``scalelite-recording-importer`` run exactly one pod each (strategy
  Recreate: never two pollers, never two importers at once).
- Recordings: the ReadWriteMany NFS export of ``values.recordings``, mounted
  by the importer, the API and nginx (playback) here, and by every server's
  recording processing (its spool).
- The server list: a Secret ``scalelite-servers`` in the format of
  ``rake servers:sync`` and a Job that runs ``servers:sync[FILE,cordon]``
  (name carries a digest of the list, so a changed list runs a new Job).
  In ``cordon`` mode a server that is disabled or gone is cordoned while it
  still has meetings: no new meetings, running ones run to their end.
- NetworkPolicies: only Scalelite's pods reach its Redis and PostgreSQL.
"""

from __future__ import annotations

import hashlib

from kubeprem.apps import base as b
from kubeprem.apps import postgresql, redis
from kubeprem.apps.bigbluebutton.values import BBBValues
from kubeprem.apps.values import ResourcesV
from kubeprem.sensitive import Sensitive
from kubeprem.yamltext import dump_yaml

APP = "bigbluebutton"
SECRET = "scalelite-auth"
SERVERS = "scalelite-servers"
RECORDINGS = "/var/bigbluebutton"


def _res(r: ResourcesV) -> b.Resources:
    return b.Resources(r.cpu, r.memory, r.cpu_limit)


def servers_yaml(v: BBBValues, api_secrets: dict[str, Sensitive[str]]) -> str:
    """The ``servers:sync`` file: every server of the values file, keyed by host."""
    servers = {
        v.host_of(s): {
            "url": f"https://{v.host_of(s)}/bigbluebutton/api",
            "secret": api_secrets[s.name].reveal(),
            "enabled": s.enabled,
            "load_multiplier": s.load_multiplier,
        }
        for s in v.servers
    }
    return dump_yaml({"servers": servers})


def scalelite_objects(
    v: BBBValues,
    images: dict[str, str],
    pw: dict[str, Sensitive[str]],
    api_secrets: dict[str, Sensitive[str]],
) -> list[b.Obj]:
    ns = v.namespace
    env = (
        b.env("URL_HOST", v.domain),
        b.env_secret("PGPASSWORD", SECRET, "postgresql-superuser"),
        b.env(
            "DATABASE_URL", f"postgres://postgres:$(PGPASSWORD)@postgresql.{ns}.svc:5432/scalelite"
        ),
        b.env_secret("REDIS_PASSWORD", SECRET, "redis-password"),
        b.env("REDIS_URL", f"redis://:$(REDIS_PASSWORD)@redis.{ns}.svc:6379"),
        b.env_secret("LOADBALANCER_SECRET", SECRET, "loadbalancer-secret"),
        b.env_secret("SECRET_KEY_BASE", SECRET, "secret-key-base"),
        b.env("RECORDING_DISABLED", "false" if v.enable_recording else "true"),
    )
    rec = b.Mount("recordings", RECORDINGS)
    vols = (
        {
            "name": "recordings",
            "nfs": {"server": v.recordings.nfs_server, "path": v.recordings.nfs_path},
        },
    )

    def deploy(
        part: str, replicas: int, ports: tuple[tuple[str, int], ...], one: bool = False
    ) -> b.Obj:
        name = f"scalelite-{part}"
        lbl, sel = b.labels(APP, name), b.selector(APP, name)
        probe = b.Probe("tcp", ports[0][1], period=10) if ports else None
        c = b.Container(
            name=part,
            image=v.image(name),
            resources=_res(v.size(name)),
            ports=ports,
            env=env,
            mounts=(rec,),
            readiness=probe,
            liveness=b.Probe("tcp", ports[0][1], period=20, failures=6, initial_delay=30)
            if ports
            else None,
        )
        pod = b.PodSpec(
            containers=(c,),
            volumes=vols,
            affinity=b.anti_affinity(sel, "preferred") if replicas > 1 else None,
        ).to_dict()
        pod["securityContext"] = {
            "fsGroup": b.FS_GROUP,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        d = b.deployment(name, ns, lbl, sel, replicas=replicas, pod=b.PodSpec(()))
        d["spec"]["template"]["spec"] = pod
        if one:
            d["spec"]["strategy"] = {"type": "Recreate"}
            d["metadata"]["annotations"] = {
                "kubeprem.io/accept": f"KP022, KP023: the {part} is a loop without a port, "
                "Scalelite runs exactly one (Recreate), its work shows in the servers' state"
            }
        return d

    api = deploy("api", 2, (("http", 3000),))
    nginx = deploy("nginx", 2, (("http", 80),))
    poller = deploy("poller", 1, (), one=True)
    importer = deploy("recording-importer", 1, (), one=True)
    listing = Sensitive(servers_yaml(v, api_secrets))
    digest = hashlib.sha256(
        "".join(
            f"{s.name}:{v.host_of(s)}:{s.enabled}:{s.load_multiplier};" for s in v.servers
        ).encode()
    ).hexdigest()[:10]
    sync_c = b.Container(
        name="servers-sync",
        image=v.image("scalelite-api"),
        resources=_res(v.size("scalelite-poller")),
        command=("bin/rake", "servers:sync[/etc/scalelite-servers/servers.yaml,cordon]"),
        env=env,
        mounts=(b.Mount("servers", "/etc/scalelite-servers", read_only=True),),
    )
    sync_lbl = b.labels(APP, "scalelite-sync")
    sync_pod = b.PodSpec(
        containers=(sync_c,), volumes=(b.volume_secret("servers", SERVERS),), restart_never=True
    ).to_dict()
    sync_pod["securityContext"] = {
        "fsGroup": b.FS_GROUP,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": b.meta(
            f"scalelite-sync-{digest}",
            ns,
            sync_lbl,
            {
                "kubeprem.io/accept": "KP022: a one-shot Job serves no traffic; "
                "KP023: servers:sync ends or fails on its own"
            },
        ),
        "spec": {
            "backoffLimit": 10,
            "template": {"metadata": {"labels": sync_lbl}, "spec": sync_pod},
        },
    }
    redis_objs = redis.build(
        redis.RedisValues(namespace=ns, storage=v.redis_storage, cluster_domain=v.cluster_domain),
        images,
        {"password": pw["redis-password"]},
    ).objects
    pg_objs = postgresql.build(
        postgresql.PostgresValues(namespace=ns, storage=v.postgresql_storage),
        images,
        {
            "superuser-password": pw["postgresql-superuser"],
            "replication-password": pw["postgresql-replication"],
        },
    ).objects
    lsvc, ssvc = b.labels(APP, "scalelite-nginx"), b.selector(APP, "scalelite-nginx")
    la, sa = b.labels(APP, "scalelite-api"), b.selector(APP, "scalelite-api")
    return [
        b.secret(SECRET, ns, b.labels(APP, "scalelite-auth"), pw),
        b.secret(SERVERS, ns, b.labels(APP, "scalelite-servers"), {"servers.yaml": listing}),
        b.service("scalelite", ns, lsvc, ssvc, [("http", 80)]),
        b.service("scalelite-api", ns, la, sa, [("http", 3000)]),
        api,
        nginx,
        poller,
        importer,
        job,
        b.pdb("scalelite-api", ns, la, sa),
        b.pdb("scalelite-nginx", ns, lsvc, ssvc),
        *_policies(ns, v.node_cidr),
        *(o for o in (*redis_objs, *pg_objs) if o["kind"] != "Namespace"),
    ]


def _policies(ns: str, node_cidr: str) -> list[b.Obj]:
    scalelite = {
        "podSelector": {
            "matchExpressions": [
                {
                    "key": "app.kubernetes.io/component",
                    "operator": "In",
                    "values": [
                        "scalelite-api",
                        "scalelite-poller",
                        "scalelite-recording-importer",
                        "scalelite-sync",
                    ],
                }
            ],
            "matchLabels": {"app.kubernetes.io/name": APP},
        }
    }

    nodes = {"ipBlock": {"cidr": node_cidr}}

    def port(n: int) -> b.Obj:
        return {"port": n, "protocol": "TCP"}

    def same(app: str) -> b.Obj:
        return {"podSelector": {"matchLabels": {"app.kubernetes.io/name": app}}}

    def policy(name: str, app: str, rules: list[b.Obj]) -> b.Obj:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": b.meta(name, ns, b.labels(APP, "policy")),
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": app}},
                "policyTypes": ["Ingress"],
                "ingress": rules,
            },
        }

    return [
        policy(
            "scalelite-redis",
            "redis",
            [
                {"from": [scalelite, same("redis")], "ports": [port(6379), port(26379)]},
                {"from": [nodes], "ports": [port(6379), port(26379), port(8404)]},  # probes
                {"ports": [port(9121)]},  # metrics
            ],
        ),
        policy(
            "scalelite-postgresql",
            "postgresql",
            [
                {"from": [scalelite], "ports": [port(5432)]},
                {"from": [same("postgresql")], "ports": [port(5432), port(8008)]},
                {"from": [nodes], "ports": [port(8008)]},  # kubelet probes
                {"ports": [port(9187)]},  # metrics
            ],
        ),
    ]


__all__ = ["SECRET", "SERVERS", "scalelite_objects", "servers_yaml"]

"""PostgreSQL, highly available: a primary and two streaming replicas run by Patroni.

Pure builder called by the ``app`` commands through ``kubeprem.apps.APPS``.

Patroni (3.0.2 in Debian bookworm) keeps its state in the Kubernetes API
(``kubernetes.use_endpoints: true``): the leader lock *is* the Endpoints
object of the Service ``postgresql`` (no selector), so the address of that
Service changes in the same API write that changes the leader; there is no
window where a label and the lock disagree. Patroni also labels each pod
``role=master`` (leader) or ``role=replica``; the Service
``postgresql-replicas`` selects ``role=replica``. Patroni needs RBAC for
Endpoints, Pods and the ``postgresql-config`` Service it creates. The
headless Service ``postgresql-metrics`` (ports ``metrics`` 9187 for
postgres_exporter, ``metrics-patroni`` 8008 for Patroni's ``/metrics``) is
what the monitoring stack scrapes.

Synchronous replication (``synchronous_mode``) is on by default: a commit
returns once a standby has it, so failover loses no acknowledged write.
Failover time is bounded by ``ttl`` (a powered-off primary's lock expires
after it); ``loop_wait + 2 * retry_timeout <= ttl`` as Patroni requires.

Passwords (superuser, replication) live in the Secret ``postgresql-auth``
only; the start script writes Patroni's configuration into a memory-backed
emptyDir from the mounted Secret. ``backup_objects`` builds the logical
backup: a claim and a Job running ``pg_dumpall`` against the primary.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from kubeprem.apps import base as b
from kubeprem.apps.values import ResourcesV, Spread, StorageV, Values
from kubeprem.sensitive import Sensitive

APP = "postgresql"
SECRET = "postgresql-auth"
SCOPE = "postgresql"
PG_BIN = "/usr/lib/postgresql/15/bin"


class PostgresValues(Values):
    namespace: str = "postgresql"
    replicas: int = Field(default=3, ge=2, le=9)
    synchronous_mode: bool = True
    synchronous_mode_strict: bool = False
    # a powered-off primary's lock expires after ttl; the standby takes it at its
    # next loop and names a new synchronous standby one loop later
    ttl: int = Field(default=15, ge=10)
    loop_wait: int = Field(default=3, ge=1)
    retry_timeout: int = Field(default=6, ge=1)
    max_connections: int = Field(default=200, ge=10)
    shared_buffers: str = "128MB"
    storage: StorageV = StorageV(size="2Gi")
    backup_storage: StorageV = StorageV(size="2Gi")
    anti_affinity: Spread = "preferred"
    resources: ResourcesV = ResourcesV(cpu="200m", memory="512Mi")
    exporter_resources: ResourcesV = ResourcesV(cpu="20m", memory="64Mi")

    @model_validator(mode="after")
    def _timing(self) -> PostgresValues:
        if self.loop_wait + 2 * self.retry_timeout > self.ttl:
            raise ValueError(
                f"Patroni needs loop_wait + 2 * retry_timeout <= ttl "
                f"({self.loop_wait} + 2 * {self.retry_timeout} > {self.ttl})"
            )
        return self


def passwords(
    existing: dict[str, Sensitive[str]], gen: b.PasswordSource
) -> dict[str, Sensitive[str]]:
    keys = ("superuser-password", "replication-password")
    return {k: existing.get(k) or gen.password() for k in keys}


def _patroni_yml(v: PostgresValues) -> str:
    ns = v.namespace
    return f"""scope: {SCOPE}
name: "@POD_NAME@"
restapi:
  listen: 0.0.0.0:8008
  connect_address: "@POD_IP@:8008"
kubernetes:
  namespace: {ns}
  labels:
    app.kubernetes.io/name: {APP}
  scope_label: cluster-name
  role_label: role
  use_endpoints: true
  pod_ip: "@POD_IP@"
  ports:
    - name: postgresql
      port: 5432
bootstrap:
  dcs:
    ttl: {v.ttl}
    loop_wait: {v.loop_wait}
    retry_timeout: {v.retry_timeout}
    maximum_lag_on_failover: 1048576
    synchronous_mode: {str(v.synchronous_mode).lower()}
    synchronous_mode_strict: {str(v.synchronous_mode_strict).lower()}
    postgresql:
      use_pg_rewind: true
      parameters:
        max_connections: {v.max_connections}
        shared_buffers: {v.shared_buffers}
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
  initdb:
    - encoding: UTF8
    - data-checksums
postgresql:
  listen: 0.0.0.0:5432
  connect_address: "@POD_IP@:5432"
  data_dir: /var/lib/postgresql/data/pgdata
  bin_dir: {PG_BIN}
  pgpass: /run/patroni/pgpass
  parameters:
    # the image's /var/run/postgresql is not writable by the pod's user
    unix_socket_directories: /run/patroni
  authentication:
    superuser:
      username: postgres
      password: ${{SUPERUSER_PASSWORD}}
    replication:
      username: replicator
      password: ${{REPLICATION_PASSWORD}}
  pg_hba:
    - local all postgres peer
    - host replication replicator 0.0.0.0/0 scram-sha-256
    - host all all 0.0.0.0/0 scram-sha-256
tags:
  nofailover: false
  noloadbalance: false
"""


START = r"""#!/bin/sh
set -eu
umask 077
su="$(cat /etc/postgresql-auth/superuser-password)"
rep="$(cat /etc/postgresql-auth/replication-password)"
sed -e "s/@POD_NAME@/$POD_NAME/" -e "s/@POD_IP@/$POD_IP/g" \
    -e "s/\${SUPERUSER_PASSWORD}/$su/" -e "s/\${REPLICATION_PASSWORD}/$rep/" \
    /etc/patroni/patroni.yml >/run/patroni/patroni.yml
# PostgreSQL refuses a group-writable data folder (a volume's fsGroup may make it so)
if [ -d /var/lib/postgresql/data/pgdata ]; then chmod 0700 /var/lib/postgresql/data/pgdata; fi
exec patroni /run/patroni/patroni.yml
"""


def _res(r: ResourcesV) -> b.Resources:
    return b.Resources(r.cpu, r.memory, r.cpu_limit)


def build(v: PostgresValues, images: dict[str, str], pw: dict[str, Sensitive[str]]) -> b.Rendered:
    ns = v.namespace
    lb, sel = b.labels(APP, "database"), b.selector(APP, "database")
    # Patroni selects its pods by these labels plus cluster-name
    pod_labels = {**lb, "cluster-name": SCOPE}
    auth_mount = b.Mount("auth", "/etc/postgresql-auth", read_only=True)
    pg = b.Container(
        name="postgresql",
        image=images["postgresql"],
        resources=_res(v.resources),
        command=("sh", "/etc/patroni/start.sh"),
        ports=(("postgresql", 5432), ("patroni", 8008)),
        env=(
            b.env_field("POD_NAME", "metadata.name"),
            b.env_field("POD_IP", "status.podIP"),
            b.env("PATRONI_KUBERNETES_NAMESPACE", ns),
        ),
        mounts=(
            b.Mount("data", "/var/lib/postgresql/data"),
            b.Mount("run", "/run/patroni"),
            b.Mount("config", "/etc/patroni", read_only=True),
            auth_mount,
        ),
        readiness=b.Probe("http", "8008:/readiness", period=3, timeout=2, failures=2),
        liveness=b.Probe("http", "8008:/liveness", period=10, timeout=3, failures=3),
    )
    exporter = b.Container(
        name="exporter",
        image=images["postgres-exporter"],
        resources=_res(v.exporter_resources),
        ports=(("metrics", 9187),),
        env=(
            b.env("DATA_SOURCE_URI", "127.0.0.1:5432/postgres?sslmode=disable"),
            b.env("DATA_SOURCE_USER", "postgres"),
            b.env("DATA_SOURCE_PASS_FILE", "/etc/postgresql-auth/superuser-password"),
        ),
        mounts=(auth_mount,),
        readiness=b.Probe("tcp", 9187, period=10),
        liveness=b.Probe("tcp", 9187, period=20),
    )
    sts = b.statefulset(
        APP,
        ns,
        pod_labels,
        sel,
        replicas=v.replicas,
        service_name="postgresql-headless",
        pod=b.PodSpec(
            containers=(pg, exporter),
            volumes=(
                b.volume_config("config", "postgresql-config"),
                b.volume_secret("auth", SECRET),
                b.volume_memory("run"),
            ),
            affinity=b.anti_affinity(sel, v.anti_affinity),
            service_account=APP,
        ),
        claims=(b.claim_template("data", v.storage.size, v.storage.storage_class),),
        # Patroni, not the pod's ordinal, decides who leads: a replica must be
        # recreated even while another member is not ready
        parallel=True,
        pod_annotations={"prometheus.io/scrape": "true", "prometheus.io/port": "9187"},
    )
    rbac_labels = b.labels(APP, "rbac")
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": b.meta(APP, ns, rbac_labels),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["endpoints"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
            },
            {
                "apiGroups": [""],
                "resources": ["pods"],
                "verbs": ["get", "list", "watch", "patch", "update"],
            },
            # the <scope>-config Service that keeps Patroni's config Endpoints alive
            {"apiGroups": [""], "resources": ["services"], "verbs": ["create"]},
        ],
    }
    binding = b.role_binding(APP, ns, rbac_labels, APP, APP, ns)
    objects = (
        b.namespace(ns, APP),
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": b.meta(APP, ns, rbac_labels),
        },
        b.secret(SECRET, ns, b.labels(APP, "auth"), pw),
        b.config_map(
            "postgresql-config",
            ns,
            b.labels(APP, "config"),
            {"patroni.yml": _patroni_yml(v), "start.sh": START},
        ),
        role,
        binding,
        b.service(
            "postgresql-headless",
            ns,
            lb,
            sel,
            [("postgresql", 5432), ("patroni", 8008)],
            headless=True,
            publish_not_ready=True,
        ),
        # no selector: Patroni writes this Service's Endpoints with the leader lock
        b.service(SCOPE, ns, {**lb, "cluster-name": SCOPE}, None, [("postgresql", 5432)]),
        b.service(
            "postgresql-replicas",
            ns,
            lb,
            {**sel, "role": "replica"},
            [("postgresql", 5432)],
        ),
        # the monitoring convention (docs/monitoring.md): every member, the
        # exporter and Patroni's /metrics; not-ready members too, so a
        # member that cannot start still reports why
        b.service(
            "postgresql-metrics",
            ns,
            lb,
            sel,
            [("metrics", 9187), ("metrics-patroni", 8008)],
            headless=True,
            publish_not_ready=True,
        ),
        sts,
        b.pdb(APP, ns, lb, sel),
    )
    return b.Rendered(
        app=APP,
        namespace=ns,
        objects=objects,
        storage_classes=(v.storage.storage_class,),
        required_spread=v.replicas if v.anti_affinity == "required" else 0,
        extra_cleanup=(
            ("Endpoints", SCOPE),
            ("Endpoints", f"{SCOPE}-config"),
            ("Endpoints", f"{SCOPE}-sync"),
            ("Endpoints", f"{SCOPE}-failover"),
            ("Service", f"{SCOPE}-config"),
        ),
    )


BACKUP = r"""#!/bin/sh
set -eu
umask 077
export PGPASSWORD="$(cat /etc/postgresql-auth/superuser-password)"
out="/backup/$STAMP.sql"
pg_dumpall -h "$PRIMARY" -U postgres --clean --if-exists -f "$out.partial"
mv "$out.partial" "$out"
ls -l /backup
"""


def backup_objects(v: PostgresValues, images: dict[str, str], stamp: str) -> tuple[b.Obj, ...]:
    """A claim for dumps and a Job that writes ``<stamp>.sql`` there with pg_dumpall."""
    ns = v.namespace
    lb = b.labels(APP, "backup")
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": b.meta("postgresql-backup", ns, lb),
        "spec": b.claim_template("x", v.backup_storage.size, v.backup_storage.storage_class)[
            "spec"
        ],
    }
    dump = b.Container(
        name="pg-dumpall",
        image=images["postgresql"],
        resources=_res(v.exporter_resources),
        command=("sh", "-c", BACKUP),
        env=(b.env("PRIMARY", f"{SCOPE}.{ns}.svc"), b.env("STAMP", stamp)),
        mounts=(
            b.Mount("backup", "/backup"),
            b.Mount("auth", "/etc/postgresql-auth", read_only=True),
        ),
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": b.meta(
            f"postgresql-backup-{stamp}",
            ns,
            lb,
            {
                "kubeprem.io/accept": "KP022: a one-shot Job serves no traffic; "
                "KP023: pg_dumpall ends or fails on its own"
            },
        ),
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": lb},
                "spec": b.PodSpec(
                    containers=(dump,),
                    volumes=(
                        {
                            "name": "backup",
                            "persistentVolumeClaim": {"claimName": "postgresql-backup"},
                        },
                        b.volume_secret("auth", SECRET),
                    ),
                    restart_never=True,
                ).to_dict(),
            },
        },
    }
    return claim, job


__all__ = ["APP", "SECRET", "PostgresValues", "backup_objects", "build", "passwords"]

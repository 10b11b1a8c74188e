"""The alert rules, as data: one table, rendered to ``<group>.rules.yml`` files.

Called by ``render`` (rule files and the rules ConfigMap), by the tests
(every alert has a promtool unit test, firing and not firing) and by
docs/monitoring.md's runbook, which has one paragraph per alert name.

Every alert carries ``severity`` (critical: someone acts now; warning: act
this working day) and, where it concerns one machine, a ``node`` label:
Alertmanager's inhibition uses it so a node that is down does not also page
for everything on it. kube-state-metrics is not packaged in Debian, so node
and pod state come from the kubelet, cAdvisor and the controller-manager;
each rule's description says what it reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubeprem.apps.monitoring import layout as L
from kubeprem.apps.monitoring.values import Values

DAY = 86400
MIB = 1024 * 1024


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str


@dataclass(frozen=True)
class Group:
    name: str  # file stem: <name>.rules.yml
    alerts: tuple[Alert, ...]


def _etcd() -> Group:
    return Group(
        "etcd",
        (
            Alert(
                "EtcdNoLeader",
                'etcd_server_has_leader{job="etcd"} == 0',
                "1m",
                "critical",
                "etcd member {{ $labels.node }} has no leader",
                "etcd on {{ $labels.node }} has seen no leader for a minute: it cannot serve "
                "writes. With no leader on a majority of members the API server is read-only.",
            ),
            Alert(
                "EtcdMemberDown",
                'up{job="etcd"} == 0',
                "3m",
                "critical",
                "etcd member {{ $labels.node }} is down or unreachable",
                "Prometheus has not reached etcd's client port on {{ $labels.node }} "
                "({{ $labels.instance }}) for 3 minutes. One more member lost and etcd loses "
                "quorum.",
            ),
            Alert(
                "EtcdDatabaseNearQuota",
                'etcd_mvcc_db_total_size_in_bytes{job="etcd"} / etcd_server_quota_backend_bytes{job="etcd"} > 0.8',
                "10m",
                "warning",
                "etcd database on {{ $labels.node }} is over 80 % of its quota",
                "The etcd database on {{ $labels.node }} uses {{ $value | humanizePercentage }} "
                "of its backend quota. At 100 % etcd raises a NOSPACE alarm and refuses writes.",
            ),
            Alert(
                "EtcdDatabaseNearQuota",
                'etcd_mvcc_db_total_size_in_bytes{job="etcd"} / etcd_server_quota_backend_bytes{job="etcd"} > 0.9',
                "5m",
                "critical",
                "etcd database on {{ $labels.node }} is over 90 % of its quota",
                "The etcd database on {{ $labels.node }} uses {{ $value | humanizePercentage }} "
                "of its backend quota. At 100 % etcd raises a NOSPACE alarm and refuses writes.",
            ),
        ),
    )


def _control_plane() -> Group:
    return Group(
        "control-plane",
        (
            Alert(
                "KubeAPIServerDown",
                'up{job="kube-apiserver"} == 0',
                "2m",
                "critical",
                "kube-apiserver on {{ $labels.node }} is down",
                "Prometheus has not reached kube-apiserver on {{ $labels.node }} "
                "({{ $labels.instance }}) for 2 minutes. HAProxy sends clients to the others; "
                "the cluster has one API server less.",
            ),
            Alert(
                "KubeAPIServerSlow",
                "histogram_quantile(0.99, sum by (node, le) "
                '(rate(apiserver_request_duration_seconds_bucket{job="kube-apiserver", '
                'verb=~"GET|POST|PUT|PATCH|DELETE"}[5m]))) > 1',
                "10m",
                "warning",
                "kube-apiserver on {{ $labels.node }} is slow",
                "The 99th percentile of non-streaming requests (GET, POST, PUT, PATCH, DELETE; "
                "not LIST or WATCH) to kube-apiserver on {{ $labels.node }} took "
                "{{ $value | humanizeDuration }} over 5 minutes, above 1 s.",
            ),
            Alert(
                "KubeControllerManagerDown",
                'up{job="kube-controller-manager"} == 0',
                "5m",
                "warning",
                "kube-controller-manager on {{ $labels.node }} is down",
                "Prometheus has not reached kube-controller-manager on {{ $labels.node }} for 5 "
                "minutes. Another instance takes the lease; with none, nothing reconciles.",
            ),
            Alert(
                "KubeSchedulerDown",
                'up{job="kube-scheduler"} == 0',
                "5m",
                "warning",
                "kube-scheduler on {{ $labels.node }} is down",
                "Prometheus has not reached kube-scheduler on {{ $labels.node }} for 5 minutes. "
                "Another instance takes the lease; with none, new pods stay Pending.",
            ),
            Alert(
                "HAProxyDown",
                'up{job="haproxy"} == 0',
                "2m",
                "warning",
                "HAProxy on {{ $labels.node }} does not answer",
                "HAProxy's metrics on {{ $labels.node }} have not answered for 2 minutes. If this "
                "machine holds the virtual IP, keepalived's check moves it to another.",
            ),
        ),
    )


def _nodes() -> Group:
    return Group(
        "nodes",
        (
            Alert(
                "KubeletDown",
                'up{job="kubelet"} == 0',
                "3m",
                "critical",
                "kubelet on {{ $labels.node }} is down or unreachable",
                "Prometheus has not reached the kubelet on {{ $labels.node }} for 3 minutes. The "
                "node soon turns NotReady and its pods are evicted after 5 minutes. Alerts "
                "about pods on this node are inhibited while this fires.",
            ),
            Alert(
                "NodeNotReady",
                'max by (zone) (node_collector_unhealthy_nodes_in_zone{job="kube-controller-manager"}) > 0',
                "2m",
                "critical",
                "{{ $value }} node(s) NotReady",
                "The node lifecycle controller counts {{ $value }} node(s) NotReady or Unknown "
                "(node_collector_unhealthy_nodes_in_zone, from the active controller-manager; "
                "kube-state-metrics is not available). `kubectl get nodes` names them; "
                "KubeletDown names a node whose kubelet is unreachable.",
            ),
            Alert(
                "NodeExporterDown",
                'up{job="node-exporter"} == 0',
                "5m",
                "warning",
                "node exporter on {{ $labels.node }} is down",
                "Machine metrics and kubeprem's textfile metrics (certificate expiry, backups) "
                "from {{ $labels.node }} are missing.",
            ),
        ),
    )


def _certificates() -> Group:
    expiry = L.CERT_EXPIRY_METRIC

    def cert(days: int, for_: str, severity: str) -> Alert:
        return Alert(
            "CertificateExpiresSoon",
            f"{expiry} - time() < {days} * {DAY}",
            for_,
            severity,
            f"certificate {{{{ $labels.cert }}}} on {{{{ $labels.node }}}} expires in under {days} days",
            f"{{{{ $labels.cert }}}} on {{{{ $labels.node }}}} expires in "
            f"{{{{ $value | humanizeDuration }}}} (from {expiry}, written by kubeprem's "
            "timer). Renew with `kubeprem certs renew`.",
        )

    def client(days: int, severity: str) -> Alert:
        return Alert(
            "KubeClientCertificateExpiresSoon",
            "histogram_quantile(0.01, sum by (node, le) "
            '(rate(apiserver_client_certificate_expiration_seconds_bucket{job="kube-apiserver"}[5m]))) '
            f"< {days} * {DAY}",
            "5m",
            severity,
            f"a client presents a certificate to kube-apiserver on {{{{ $labels.node }}}} that expires in under {days} days",
            "Of the requests kube-apiserver on {{ $labels.node }} authenticated by client "
            "certificate in 5 minutes, the first percentile used one that expires in "
            "{{ $value | humanizeDuration }} (apiserver_client_certificate_expiration_seconds). "
            "Renew with `kubeprem certs renew`.",
        )

    return Group(
        "certificates",
        (
            cert(30, "1h", "warning"),
            cert(7, "10m", "critical"),
            client(30, "warning"),
            client(7, "critical"),
        ),
    )


def _workloads() -> Group:
    return Group(
        "workloads",
        (
            Alert(
                "KubePodCrashLooping",
                "count by (namespace, pod, container, node) "
                '(count_over_time(container_start_time_seconds{job="cadvisor", container!="", '
                'container!="POD"}[15m])) >= 3',
                "5m",
                "warning",
                "container {{ $labels.container }} of {{ $labels.namespace }}/{{ $labels.pod }} is restarting",
                "{{ $labels.namespace }}/{{ $labels.pod }} ({{ $labels.container }}, on "
                "{{ $labels.node }}) started {{ $value }} times in 15 minutes, counted from "
                "cAdvisor (each start is a new container); kube-state-metrics' restart counter "
                "is not available.",
            ),
            Alert(
                "PersistentVolumeFillingUp",
                'kubelet_volume_stats_used_bytes{job="kubelet"} / '
                'kubelet_volume_stats_capacity_bytes{job="kubelet"} > 0.85',
                "5m",
                "warning",
                "volume {{ $labels.namespace }}/{{ $labels.persistentvolumeclaim }} is over 85 % full",
                "The volume of claim {{ $labels.namespace }}/{{ $labels.persistentvolumeclaim }} "
                "on {{ $labels.node }} is {{ $value | humanizePercentage }} full.",
            ),
            Alert(
                "AppExporterDown",
                'up{job=~"app/.+"} == 0',
                "5m",
                "warning",
                "exporter {{ $labels.namespace }}/{{ $labels.pod }} does not answer",
                "Prometheus has not scraped {{ $labels.instance }} of "
                "{{ $labels.namespace }}/{{ $labels.app_instance }} (pod {{ $labels.pod }}) "
                "for 5 minutes: the pod is down or its exporter is.",
            ),
        ),
    )


def _redis() -> Group:
    return Group(
        "redis",
        (
            Alert(
                "RedisPrimaryMissing",
                'count by (namespace, app_instance) (redis_up{job=~"app/.+"}) unless on '
                "(namespace, app_instance) "
                '(redis_instance_info{job=~"app/.+", role="master"} and on (namespace, pod) '
                'redis_up{job=~"app/.+"} == 1)',
                "1m",
                "critical",
                "Redis {{ $labels.namespace }}/{{ $labels.app_instance }} has no primary",
                "No Redis server of {{ $labels.namespace }}/{{ $labels.app_instance }} has been "
                "a primary (role master) for a minute: writes fail. Sentinel should have "
                "promoted a replica by now.",
            ),
            Alert(
                "RedisReplicationBroken",
                'redis_master_link_up{job=~"app/.+"} == 0',
                "2m",
                "warning",
                "Redis replica {{ $labels.namespace }}/{{ $labels.pod }} lost its primary",
                "The replica {{ $labels.pod }} of {{ $labels.namespace }}/"
                "{{ $labels.app_instance }} has had no link to its primary for 2 minutes.",
            ),
            Alert(
                "RedisReplicationLagging",
                'redis_connected_slave_lag_seconds{job=~"app/.+"} > 10',
                "2m",
                "warning",
                "Redis replica {{ $labels.slave_ip }} of {{ $labels.namespace }}/{{ $labels.app_instance }} lags",
                "The primary {{ $labels.pod }} last heard from its replica {{ $labels.slave_ip }} "
                "{{ $value }} s ago (replicas acknowledge every second).",
            ),
        ),
    )


def _postgresql() -> Group:
    return Group(
        "postgresql",
        (
            Alert(
                "PostgreSQLPrimaryMissing",
                'max by (namespace, app_instance) (patroni_primary{job=~"app/.+"} * '
                'patroni_postgres_running{job=~"app/.+"}) < 1',
                "1m",
                "critical",
                "PostgreSQL {{ $labels.namespace }}/{{ $labels.app_instance }} has no primary",
                "No Patroni member of {{ $labels.namespace }}/{{ $labels.app_instance }} runs a "
                "primary PostgreSQL (patroni_primary) for a minute: writes fail.",
            ),
            Alert(
                "PostgreSQLReplicationLagging",
                'max by (namespace, app_instance) (patroni_xlog_location{job=~"app/.+"}) - on '
                "(namespace, app_instance) group_right() "
                '(patroni_xlog_replayed_location{job=~"app/.+"} and on (namespace, pod) '
                f'patroni_replica{{job=~"app/.+"}} == 1) > {64 * MIB}',
                "5m",
                "warning",
                "PostgreSQL replica {{ $labels.namespace }}/{{ $labels.pod }} lags",
                "The replica {{ $labels.pod }} of {{ $labels.namespace }}/"
                "{{ $labels.app_instance }} has replayed {{ $value | humanize1024 }}B less WAL "
                "than the primary wrote, above 64 MiB, for 5 minutes.",
            ),
        ),
    )


def _backup(values: Values) -> Group:
    hours = values.etcd_backup_interval_hours
    return Group(
        "backup",
        (
            Alert(
                "EtcdBackupTooOld",
                f"time() - max({L.BACKUP_METRIC}) > 2 * {hours} * 3600",
                "10m",
                "critical",
                f"the last etcd backup is older than {2 * hours} hours",
                f"The newest successful etcd backup is {{{{ $value | humanizeDuration }}}} old; "
                f"backups run every {hours} hours ({L.BACKUP_METRIC}).",
            ),
            Alert(
                "EtcdBackupMissing",
                f"absent({L.BACKUP_METRIC})",
                f"{2 * hours}h",
                "warning",
                "no etcd backup has been recorded",
                f"No machine has reported {L.BACKUP_METRIC} for {2 * hours} hours: no backup "
                "has succeeded, or the node exporter on the machines that run it is not "
                "scraped.",
            ),
        ),
    )


def _monitoring() -> Group:
    return Group(
        "monitoring",
        (
            Alert(
                "AlertmanagerNotificationsFailing",
                'rate(alertmanager_notifications_failed_total{job="alertmanager"}[10m]) > 0',
                "10m",
                "critical",
                "Alertmanager fails to send {{ $labels.integration }} notifications",
                "Alertmanager {{ $labels.instance }} has failed to deliver notifications through "
                "{{ $labels.integration }} for 10 minutes: alerts may reach nobody.",
            ),
        ),
    )


def groups(values: Values) -> tuple[Group, ...]:
    return (
        _etcd(),
        _control_plane(),
        _nodes(),
        _certificates(),
        _workloads(),
        _redis(),
        _postgresql(),
        _backup(values),
        _monitoring(),
    )


def alert_names(values: Values) -> list[str]:
    """Every alert name, each once, in table order."""
    return list(dict.fromkeys(a.name for g in groups(values) for a in g.alerts))


def group_doc(group: Group) -> dict[str, object]:
    return {
        "groups": [
            {
                "name": group.name,
                "rules": [
                    {
                        "alert": a.name,
                        "expr": a.expr,
                        "for": a.for_,
                        "labels": {"severity": a.severity},
                        "annotations": {
                            "summary": a.summary,
                            "description": a.description,
                            "runbook_url": f"docs/monitoring.md#{a.name.lower()}",
                        },
                    }
                    for a in group.alerts
                ],
            }
        ]
    }


def render(values: Values) -> dict[str, str]:
    """File name -> text, one ``<group>.rules.yml`` per group."""
    header = "# Rendered by kubeprem (kubeprem monitoring render); changes here are overwritten.\n"
    return {f"{g.name}.rules.yml": header + L.to_yaml(group_doc(g)) for g in groups(values)}

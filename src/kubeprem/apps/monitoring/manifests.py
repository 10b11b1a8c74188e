"""The Kubernetes objects of the monitoring stack, as plain data in apply order.

Called by ``render`` (manifests.yaml) and by the tests (golden file, audit).
Prometheus and Alertmanager are StatefulSets with one claim per replica on
the site's local storage class; node exporter is a DaemonSet on every node.
Two objects are deliberately absent because they hold private material and
are created by the deploy step from the PKI and the operator's secret
store, never written to a render folder:

- Secret ``prometheus-etcd-client`` (``ca.crt``, ``tls.crt``, ``tls.key``):
  the etcd CA and Prometheus's etcd client certificate;
- Secret ``alertmanager-smtp`` (``password``), when e-mail is configured.

A config change changes the ``kubeprem.io/config-sha256`` annotation of the
pod template, so the StatefulSet rolls its pods onto the new configuration.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kubeprem.apps.monitoring import layout as L
from kubeprem.apps.monitoring.values import Values
from kubeprem.images.catalogue import by_name
from kubeprem.site.model import Site

Obj = dict[str, Any]
NOBODY = 65534  # the images' unprivileged user; owns the claims through fsGroup


def _meta(name: str, values: Values, app: str, **extra: Any) -> Obj:
    meta: Obj = {
        "name": name,
        "namespace": values.namespace,
        "labels": {L.NAME_LABEL: app, **L.PART_OF, **L.MANAGED},
    }
    meta.update(extra)
    return meta


def _sha(*texts: str) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()


def _pod_security() -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": NOBODY,
        "runAsGroup": NOBODY,
        "fsGroup": NOBODY,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _http_probe(path: str, port: str | int, period: int, failures: int, delay: int = 0) -> Obj:
    probe: Obj = {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }
    if delay:
        probe["initialDelaySeconds"] = delay
    return probe


def _spread(app: str) -> list[Obj]:
    return [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            # a smaller lab still runs every replica; spread when nodes allow
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {L.NAME_LABEL: app}},
        }
    ]


def _claim(size: str, values: Values) -> Obj:
    return {
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": values.storage_class,
            "resources": {"requests": {"storage": size}},
        },
    }


def _pdb(site: Site, app: str, values: Values) -> Obj:
    # policy/v1 arrives in 1.21; 1.20 (the lab) serves policy/v1beta1 only
    return {
        "apiVersion": "policy/v1beta1" if site.cluster.minor < (1, 21) else "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(app, values, app),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {L.NAME_LABEL: app}}},
    }


# Every port names its protocol: Kubernetes 1.20's server-side apply keys the
# ports list by (port, protocol) and refuses an entry without it.
def _service(name: str, app: str, values: Values, ports: list[Obj], headless: bool) -> Obj:
    spec: Obj = {"selector": {L.NAME_LABEL: app}, "ports": ports}
    if headless:
        spec = {"clusterIP": "None", "publishNotReadyAddresses": True, **spec}
    else:
        spec = {"type": "ClusterIP", **spec}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, values, app),
        "spec": spec,
    }


def _rbac(values: Values) -> list[Obj]:
    name = "kubeprem:prometheus"
    labels = {L.NAME_LABEL: L.PROMETHEUS, **L.PART_OF, **L.MANAGED}
    role: Obj = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels},
        "rules": [
            {
                # the kubelet's /metrics and /metrics/cadvisor: nodes/proxy for
                # the API server's node proxy, which Prometheus scrapes them
                # through; nodes/metrics for a scraper in firewall.monitoring_networks
                # that asks a kubelet directly (webhook authorization)
                "apiGroups": [""],
                "resources": ["nodes/metrics", "nodes/proxy"],
                "verbs": ["get"],
            },
            {
                # /metrics of the API servers, controller-manager and scheduler
                "nonResourceURLs": ["/metrics"],
                "verbs": ["get"],
            },
        ],
    }
    binding: Obj = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [
            {"kind": "ServiceAccount", "name": L.PROMETHEUS, "namespace": values.namespace}
        ],
    }
    return [role, binding]


def _service_account(name: str, values: Values, token: bool) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, values, name),
        "automountServiceAccountToken": token,
    }


def _config_map(name: str, app: str, values: Values, data: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name, values, app),
        "data": dict(sorted(data.items())),
    }


def _prometheus(values: Values, config_sha: str) -> Obj:
    app = L.PROMETHEUS
    container: Obj = {
        "name": "prometheus",
        "image": by_name("prometheus").default_ref(),
        "imagePullPolicy": "IfNotPresent",
        "args": [
            f"--config.file={L.CONFIG_FILE}",
            f"--storage.tsdb.path={L.DATA_DIR}",
            f"--storage.tsdb.retention.time={values.retention_days}d",
            f"--web.listen-address=:{L.PROMETHEUS_PORT}",
        ],
        "ports": [{"name": "web", "containerPort": L.PROMETHEUS_PORT, "protocol": "TCP"}],
        "readinessProbe": _http_probe("/-/ready", "web", 10, 3),
        # replaying the write-ahead log after a restart can take minutes
        "livenessProbe": _http_probe("/-/healthy", "web", 30, 10, delay=60),
        "resources": {
            "requests": {"cpu": "250m", "memory": "1Gi"},
            "limits": {"memory": "2Gi"},
        },
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "config", "mountPath": L.CONFIG_DIR, "readOnly": True},
            {"name": "rules", "mountPath": L.RULES_DIR, "readOnly": True},
            {"name": "etcd-client", "mountPath": L.ETCD_CLIENT_DIR, "readOnly": True},
            {"name": "data", "mountPath": L.DATA_DIR},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(app, values, app),
        "spec": {
            "serviceName": L.PROMETHEUS_HEADLESS,
            "replicas": values.prometheus_replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {L.NAME_LABEL: app}},
            "template": {
                "metadata": {
                    "labels": {L.NAME_LABEL: app, **L.PART_OF},
                    "annotations": {"kubeprem.io/config-sha256": config_sha},
                },
                "spec": {
                    "serviceAccountName": L.PROMETHEUS,
                    "automountServiceAccountToken": True,
                    "securityContext": _pod_security(),
                    "topologySpreadConstraints": _spread(app),
                    "terminationGracePeriodSeconds": 120,
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "prometheus-config"}},
                        {"name": "rules", "configMap": {"name": "prometheus-rules"}},
                        {
                            "name": "etcd-client",
                            "secret": {"secretName": L.ETCD_CLIENT_SECRET, "defaultMode": 0o440},
                        },
                    ],
                },
            },
            "volumeClaimTemplates": [_claim(values.prometheus_storage, values)],
        },
    }


def _alertmanager(site: Site, values: Values, config_sha: str) -> Obj:
    app = L.ALERTMANAGER
    args = [
        f"--config.file={L.AM_CONFIG_FILE}",
        f"--storage.path={L.AM_DATA_DIR}",
        f"--web.listen-address=:{L.ALERTMANAGER_PORT}",
    ]
    if values.alertmanager_replicas > 1:
        # replicas gossip silences and notification state, so each alert is sent once
        domain = f"{L.ALERTMANAGER_PEERS}.{values.namespace}.svc.{site.cluster.domain}"
        args += [
            f"--cluster.listen-address=0.0.0.0:{L.ALERTMANAGER_CLUSTER_PORT}",
            f"--cluster.advertise-address=$(POD_IP):{L.ALERTMANAGER_CLUSTER_PORT}",
            *(
                f"--cluster.peer={app}-{i}.{domain}:{L.ALERTMANAGER_CLUSTER_PORT}"
                for i in range(values.alertmanager_replicas)
            ),
        ]
    else:
        args.append("--cluster.listen-address=")  # a single replica: no gossip
    mounts: list[Obj] = [
        {"name": "config", "mountPath": L.AM_CONFIG_DIR, "readOnly": True},
        {"name": "data", "mountPath": L.AM_DATA_DIR},
    ]
    volumes: list[Obj] = [{"name": "config", "configMap": {"name": "alertmanager-config"}}]
    if values.email is not None and values.email.username is not None:
        mounts.append({"name": "smtp", "mountPath": L.AM_SMTP_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "smtp",
                "secret": {
                    "secretName": values.email.password_secret,
                    "defaultMode": 0o440,
                    "items": [{"key": "password", "path": "password"}],
                },
            }
        )
    container: Obj = {
        "name": "alertmanager",
        "image": by_name("alertmanager").default_ref(),
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [
            {"name": "web", "containerPort": L.ALERTMANAGER_PORT, "protocol": "TCP"},
            {"name": "cluster", "containerPort": L.ALERTMANAGER_CLUSTER_PORT, "protocol": "TCP"},
            {
                "name": "cluster-udp",
                "containerPort": L.ALERTMANAGER_CLUSTER_PORT,
                "protocol": "UDP",
            },
        ],
        "readinessProbe": _http_probe("/-/ready", "web", 10, 3),
        "livenessProbe": _http_probe("/-/healthy", "web", 20, 6, delay=10),
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(app, values, app),
        "spec": {
            "serviceName": L.ALERTMANAGER_PEERS,
            "replicas": values.alertmanager_replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {L.NAME_LABEL: app}},
            "template": {
                "metadata": {
                    "labels": {L.NAME_LABEL: app, **L.PART_OF},
                    "annotations": {"kubeprem.io/config-sha256": config_sha},
                },
                "spec": {
                    "serviceAccountName": L.ALERTMANAGER,
                    "automountServiceAccountToken": False,
                    "securityContext": _pod_security(),
                    "topologySpreadConstraints": _spread(app),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [_claim(values.alertmanager_storage, values)],
        },
    }


NODE_EXPORTER_ACCEPT = "\n".join(
    [
        "KP082: node exporter reports the node's own network and process statistics",
        "KP011: /proc and /sys are mounted read-only for the node's kernel counters",
        "KP010: read-only textfile-collector folder where kubeprem's timers write "
        "certificate-expiry and etcd-backup metrics, no pod state",
        "",
    ]
)


def _node_exporter(values: Values) -> Obj:
    app = L.NODE_EXPORTER
    container: Obj = {
        "name": "node-exporter",
        "image": by_name("node-exporter").default_ref(),
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "--path.procfs=/host/proc",
            "--path.sysfs=/host/sys",
            "--collector.textfile.directory=/host/textfile",
            # statfs would see the container's mounts, not the node's: needs the
            # node's root mounted (a follow-up), so left off rather than wrong
            "--no-collector.filesystem",
            f"--web.listen-address=$(HOST_IP):{L.NODE_EXPORTER_PORT}",
        ],
        "env": [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}],
        "ports": [
            {
                "name": "http-metrics",
                "containerPort": L.NODE_EXPORTER_PORT,
                "hostPort": L.NODE_EXPORTER_PORT,
                "protocol": "TCP",
            }
        ],
        "readinessProbe": _http_probe("/", "http-metrics", 10, 3),
        "livenessProbe": _http_probe("/", "http-metrics", 20, 6, delay=10),
        "resources": {
            "requests": {"cpu": "50m", "memory": "32Mi"},
            "limits": {"memory": "128Mi"},
        },
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "proc", "mountPath": "/host/proc", "readOnly": True},
            {"name": "sys", "mountPath": "/host/sys", "readOnly": True},
            {"name": "textfile", "mountPath": "/host/textfile", "readOnly": True},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(
            app, values, app, annotations={"kubeprem.io/accept": NODE_EXPORTER_ACCEPT}
        ),
        "spec": {
            "selector": {"matchLabels": {L.NAME_LABEL: app}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {L.NAME_LABEL: app, **L.PART_OF}},
                "spec": {
                    "serviceAccountName": L.NODE_EXPORTER,
                    "automountServiceAccountToken": False,
                    "hostNetwork": True,
                    "hostPID": True,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "securityContext": {k: v for k, v in _pod_security().items() if k != "fsGroup"},
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [container],
                    "volumes": [
                        {"name": "proc", "hostPath": {"path": "/proc", "type": "Directory"}},
                        {"name": "sys", "hostPath": {"path": "/sys", "type": "Directory"}},
                        {
                            "name": "textfile",
                            "hostPath": {"path": L.TEXTFILE_DIR, "type": "DirectoryOrCreate"},
                        },
                    ],
                },
            },
        },
    }


def objects(
    site: Site,
    values: Values,
    prometheus_yml: str,
    rule_files: dict[str, str],
    alertmanager_yml: str,
) -> list[Obj]:
    """Every object, in apply order: namespace, identities, configuration,
    Services (headless before their StatefulSets), budgets, workloads."""
    ns: Obj = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": values.namespace, "labels": {**L.PART_OF, **L.MANAGED}},
    }
    prom_sha = _sha(prometheus_yml, *(rule_files[k] for k in sorted(rule_files)))
    out: list[Obj] = [
        ns,
        _service_account(L.PROMETHEUS, values, token=True),
        _service_account(L.ALERTMANAGER, values, token=False),
        _service_account(L.NODE_EXPORTER, values, token=False),
        *_rbac(values),
        _config_map("prometheus-config", L.PROMETHEUS, values, {"prometheus.yml": prometheus_yml}),
        _config_map("prometheus-rules", L.PROMETHEUS, values, rule_files),
        _config_map(
            "alertmanager-config", L.ALERTMANAGER, values, {"alertmanager.yml": alertmanager_yml}
        ),
        _service(
            L.PROMETHEUS_HEADLESS,
            L.PROMETHEUS,
            values,
            [{"name": "web", "port": L.PROMETHEUS_PORT, "targetPort": "web", "protocol": "TCP"}],
            headless=True,
        ),
        _service(
            L.PROMETHEUS,
            L.PROMETHEUS,
            values,
            [{"name": "web", "port": L.PROMETHEUS_PORT, "targetPort": "web", "protocol": "TCP"}],
            headless=False,
        ),
        _service(
            L.ALERTMANAGER_PEERS,
            L.ALERTMANAGER,
            values,
            [
                {
                    "name": "web",
                    "port": L.ALERTMANAGER_PORT,
                    "targetPort": "web",
                    "protocol": "TCP",
                },
                {
                    "name": "cluster",
                    "port": L.ALERTMANAGER_CLUSTER_PORT,
                    "targetPort": "cluster",
                    "protocol": "TCP",
                },
                {
                    "name": "cluster-udp",
                    "port": L.ALERTMANAGER_CLUSTER_PORT,
                    "targetPort": "cluster-udp",
                    "protocol": "UDP",
                },
            ],
            headless=True,
        ),
        _service(
            L.ALERTMANAGER,
            L.ALERTMANAGER,
            values,
            [{"name": "web", "port": L.ALERTMANAGER_PORT, "targetPort": "web", "protocol": "TCP"}],
            headless=False,
        ),
    ]
    if values.prometheus_replicas > 1:
        out.append(_pdb(site, L.PROMETHEUS, values))
    if values.alertmanager_replicas > 1:
        out.append(_pdb(site, L.ALERTMANAGER, values))
    out += [
        _prometheus(values, prom_sha),
        _alertmanager(site, values, _sha(alertmanager_yml)),
        _node_exporter(values),
    ]
    return out

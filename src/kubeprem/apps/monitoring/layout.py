"""Names, ports and paths shared by the monitoring renderers, in one place.

The scrape configuration, the rules, the Alertmanager configuration and the
manifests must agree on these (a Secret's mount path, a job name a rule
selects, a port name the service discovery keeps); they are defined here and
nowhere else. Called by every module of this package and by the tests.
"""

from __future__ import annotations

from typing import Any

from kubeprem.yamltext import dump_yaml

# -- in the Prometheus pod ---------------------------------------------------
CONFIG_DIR = "/etc/prometheus/config"  # ConfigMap prometheus-config
CONFIG_FILE = f"{CONFIG_DIR}/prometheus.yml"
RULES_DIR = "/etc/prometheus/rules"  # ConfigMap prometheus-rules
RULES_GLOB = f"{RULES_DIR}/*.rules.yml"
DATA_DIR = "/prometheus"  # the PersistentVolumeClaim
ETCD_CLIENT_DIR = "/etc/prometheus/secrets/etcd-client"  # Secret prometheus-etcd-client
ETCD_CLIENT_SECRET = "prometheus-etcd-client"
ETCD_CLIENT_CA = f"{ETCD_CLIENT_DIR}/ca.crt"  # the etcd CA
ETCD_CLIENT_CRT = f"{ETCD_CLIENT_DIR}/tls.crt"
ETCD_CLIENT_KEY = f"{ETCD_CLIENT_DIR}/tls.key"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_TOKEN = f"{SA_DIR}/token"
SA_CA = f"{SA_DIR}/ca.crt"  # the cluster CA: API servers, kubelets, controllers

# -- in the Alertmanager pod ---------------------------------------------------
AM_CONFIG_DIR = "/etc/alertmanager/config"  # ConfigMap alertmanager-config
AM_CONFIG_FILE = f"{AM_CONFIG_DIR}/alertmanager.yml"
AM_DATA_DIR = "/alertmanager"
AM_SMTP_DIR = "/etc/alertmanager/secrets/smtp"
AM_SMTP_PASSWORD = f"{AM_SMTP_DIR}/password"

# -- on the machines -------------------------------------------------------------
# Debian's prometheus-node-exporter reads this folder by default; kubeprem's
# timers write kubeprem_*.prom files into it on every machine.
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"

# -- ports -------------------------------------------------------------------
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
ALERTMANAGER_CLUSTER_PORT = 9094
NODE_EXPORTER_PORT = 9100
KUBELET_PORT = 10250
KUBE_PROXY_METRICS_PORT = 10249
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259
# the Prometheus exporter frontend the HAProxy follow-up adds (machine address)
HAPROXY_METRICS_PORT = 8405

# -- names -----------------------------------------------------------------------
PROMETHEUS = "prometheus"
ALERTMANAGER = "alertmanager"
ALERTMANAGER_PEERS = "alertmanager-peers"  # headless: gossip and per-replica alerting
PROMETHEUS_HEADLESS = "prometheus-headless"
NODE_EXPORTER = "node-exporter"
NAME_LABEL = "app.kubernetes.io/name"
PART_OF = {"app.kubernetes.io/part-of": "kubeprem-monitoring"}
MANAGED = {"app.kubernetes.io/managed-by": "kubeprem"}

# textfile-collector metrics kubeprem's own timers write (docs/monitoring.md)
CERT_EXPIRY_METRIC = "kubeprem_certificate_expiry_timestamp_seconds"
BACKUP_METRIC = "kubeprem_etcd_backup_last_success_timestamp_seconds"


def to_yaml(*docs: Any) -> str:
    return dump_yaml(*docs)

"""Monitoring and alerting for a kubeprem cluster: Prometheus, Alertmanager, node exporter.

Pure renderers, site + values -> text; ``kubeprem monitoring render`` writes
them to a folder, and the deploy step (with the kube client) will apply
``manifests.yaml``. docs/monitoring.md says what is scraped and how, and
holds the runbook: one paragraph per alert.

    values        the values file (namespace, storage, receivers, application exporters)
    layout        names, ports and paths every renderer agrees on
    scrape        prometheus.yml
    rules         the alert table -> <group>.rules.yml
    alertmanager  alertmanager.yml: routes, receivers, inhibition
    manifests     StatefulSets, DaemonSet, Services, RBAC, ConfigMaps, budgets
    render        all of the above as {relative path: text}
"""

from kubeprem.apps.monitoring.render import objects, render
from kubeprem.apps.monitoring.rules import alert_names
from kubeprem.apps.monitoring.values import EXPOSABLE, Values, load_values, parse_values

__all__ = ["EXPOSABLE", "Values", "alert_names", "load_values", "objects", "parse_values", "render"]

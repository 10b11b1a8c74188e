"""Site + values -> every file of the monitoring stack, as text (pure).

Called by ``kubeprem monitoring render`` and by the tests. The folder it
describes::

    prometheus/prometheus.yml
    prometheus/rules/<group>.rules.yml
    alertmanager/alertmanager.yml
    manifests.yaml              every object, in apply order

The configuration files are the same texts the ConfigMaps in
manifests.yaml carry; they are written on their own so promtool and amtool
can check them.
"""

from __future__ import annotations

from typing import Any

from kubeprem.apps.monitoring import alertmanager, manifests, rules, scrape
from kubeprem.apps.monitoring import layout as L
from kubeprem.apps.monitoring.values import Values
from kubeprem.site.model import Site


def objects(site: Site, values: Values) -> list[dict[str, Any]]:
    """The Kubernetes objects, in apply order."""
    return manifests.objects(
        site,
        values,
        scrape.render(site, values),
        rules.render(values),
        alertmanager.render(values),
    )


def render(site: Site, values: Values) -> dict[str, str]:
    """Relative path -> text, for every file of the monitoring stack."""
    prometheus_yml = scrape.render(site, values)
    rule_files = rules.render(values)
    alertmanager_yml = alertmanager.render(values)
    objs = manifests.objects(site, values, prometheus_yml, rule_files, alertmanager_yml)
    files = {"prometheus/prometheus.yml": prometheus_yml}
    files.update({f"prometheus/rules/{name}": text for name, text in rule_files.items()})
    files["alertmanager/alertmanager.yml"] = alertmanager_yml
    files["manifests.yaml"] = L.to_yaml(*objs)
    return files

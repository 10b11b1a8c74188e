"""alertmanager.yml: where alerts go, how they are grouped, what silences what.

Called by ``render``. Every alert goes to the webhook; critical alerts also
go by e-mail. The SMTP password is never in this file: Alertmanager reads
it from a Secret mounted as a file (``smtp_auth_password_file``, supported
from Alertmanager 0.25, Debian bookworm's version).

Inhibition, so one cause pages once:

- a kubelet that is down (``KubeletDown``) silences the alerts about what
  runs on that node (``ON_NODE``: crash-looping containers, volumes, its
  node exporter), matched by the ``node`` label. Application exporters are
  found by DNS and carry no node label: their alerts are per application;
- a critical alert silences the warning of the same name for the same
  object (certificate under 7 days silences under 30; 90 % silences 80 %);
- an API server that is down silences its latency alert.
"""

from __future__ import annotations

from typing import Any

from kubeprem.apps.monitoring import layout as L
from kubeprem.apps.monitoring.values import Values

WEBHOOK = "webhook"
EMAIL = "email"
NOBODY = "nobody"  # no receiver configured: alerts stay visible in the web UI only

# Alerts about what runs on one node, silenced while that node's kubelet is
# down. Machine-level alerts (etcd, control plane) are not: a machine that is
# both worker and etcd member must still page for its etcd.
ON_NODE = (
    "KubePodCrashLooping",
    "PersistentVolumeFillingUp",
    "NodeExporterDown",
)


def _receivers(values: Values) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if values.webhook is not None:
        out.append(
            {
                "name": WEBHOOK,
                "webhook_configs": [
                    {"url": values.webhook.url, "send_resolved": values.webhook.send_resolved}
                ],
            }
        )
    if values.email is not None:
        out.append(
            {
                "name": EMAIL,
                "email_configs": [
                    {"to": ", ".join(values.email.to), "send_resolved": values.email.send_resolved}
                ],
            }
        )
    if not out:
        out.append({"name": NOBODY})
    return out


def _route(values: Values) -> dict[str, Any]:
    route: dict[str, Any] = {
        "receiver": WEBHOOK if values.webhook else EMAIL if values.email else NOBODY,
        "group_by": ["cluster", "alertname", "namespace"],
        # short enough that a firing alert reaches the receiver within a
        # scrape interval of its `for:`; longer waits only batch more alerts
        "group_wait": "10s",
        "group_interval": "5m",
        "repeat_interval": "4h",
    }
    routes: list[dict[str, Any]] = []
    if values.webhook is not None and values.email is not None:
        routes.append({"receiver": WEBHOOK, "continue": True})
    if values.email is not None:
        routes.append(
            {"receiver": EMAIL, "matchers": ['severity="critical"'], "repeat_interval": "1h"}
        )
    if routes:
        route["routes"] = routes
    return route


def _inhibit_rules() -> list[dict[str, Any]]:
    return [
        {
            "source_matchers": ['alertname="KubeletDown"'],
            "target_matchers": [f'alertname=~"{"|".join(ON_NODE)}"'],
            "equal": ["cluster", "node"],
        },
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["cluster", "alertname", "node", "namespace", "cert", "instance"],
        },
        {
            "source_matchers": ['alertname="KubeAPIServerDown"'],
            "target_matchers": ['alertname="KubeAPIServerSlow"'],
            "equal": ["cluster", "node"],
        },
    ]


def config(values: Values) -> dict[str, Any]:
    glob: dict[str, Any] = {"resolve_timeout": "5m"}
    if values.email is not None:
        e = values.email
        glob["smtp_smarthost"] = e.smarthost
        glob["smtp_from"] = e.sender
        if e.username is not None:
            glob["smtp_auth_username"] = e.username
            glob["smtp_auth_password_file"] = L.AM_SMTP_PASSWORD
        glob["smtp_require_tls"] = e.require_tls
    return {
        "global": glob,
        "route": _route(values),
        "inhibit_rules": _inhibit_rules(),
        "receivers": _receivers(values),
    }


def render(values: Values) -> str:
    header = "# Rendered by kubeprem (kubeprem monitoring render); changes here are overwritten.\n"
    return header + L.to_yaml(config(values))

"""The API server's audit policy and audit-log flags.

Called by ``kubeprem.components.apiserver`` when ``site.audit.enabled``.
Rules are matched in order, first match wins, so the order below is the
policy: health probes and high-volume component chatter are not logged;
anything that can carry a secret (Secrets, ConfigMaps, token requests and
reviews) is logged at Metadata only, so request and response bodies that
hold keys or tokens never reach the log; other writes are logged with their
request body; everything else at Metadata.
"""

from __future__ import annotations

from typing import Any

from kubeprem.components import paths
from kubeprem.components.base import File
from kubeprem.components.rbac import to_yaml
from kubeprem.site.model import Site

# Bodies of these resources may hold secrets: never above Metadata.
SENSITIVE: tuple[dict[str, Any], ...] = (
    {"group": "", "resources": ["secrets", "configmaps", "serviceaccounts/token"]},
    {"group": "authentication.k8s.io", "resources": ["tokenreviews"]},
)

HEALTH_URLS = ("/healthz*", "/readyz*", "/livez*", "/version", "/metrics")


def policy() -> dict[str, Any]:
    rules: list[dict[str, Any]] = [
        # load balancer and kubelet probes, every second or two from each machine
        {"level": "None", "nonResourceURLs": list(HEALTH_URLS)},
        # watches and status reads by system components: volume, no insight
        {
            "level": "None",
            "users": ["system:kube-proxy"],
            "verbs": ["watch"],
            "resources": [
                {"group": "", "resources": ["endpoints", "services", "services/status"]},
                {"group": "discovery.k8s.io", "resources": ["endpointslices"]},
            ],
        },
        {
            "level": "None",
            "userGroups": ["system:nodes"],
            "verbs": ["get"],
            "resources": [{"group": "", "resources": ["nodes", "nodes/status"]}],
        },
        # leader-election renewals every few seconds
        {
            "level": "None",
            "users": ["system:kube-controller-manager", "system:kube-scheduler"],
            "verbs": ["get", "update"],
            "namespaces": ["kube-system"],
            "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}],
        },
        # events are themselves a record
        {"level": "None", "resources": [{"group": "", "resources": ["events"]}]},
        # who touched a secret and when, never what it holds
        {"level": "Metadata", "resources": [dict(r) for r in SENSITIVE]},
        # changes, with what was asked for
        {"level": "Request", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "Metadata"},
    ]
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        # the RequestReceived stage repeats what ResponseComplete says
        "omitStages": ["RequestReceived"],
        "rules": rules,
    }


def policy_text() -> str:
    return to_yaml(policy())


def policy_file() -> File:
    return File.text(paths.AUDIT_POLICY, policy_text(), 0o600)


def apiserver_flags(site: Site) -> dict[str, str | int | bool | None]:
    """The kube-apiserver flags for the audit log; empty when auditing is off."""
    if not site.audit.enabled:
        return {}
    return {
        "audit-policy-file": paths.AUDIT_POLICY,
        "audit-log-path": paths.AUDIT_LOG,
        "audit-log-maxage": site.audit.max_age_days,
        "audit-log-maxbackup": site.audit.max_backups,
        "audit-log-maxsize": site.audit.max_size_mb,
    }

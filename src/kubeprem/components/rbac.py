"""Cluster RBAC that lets the API server reach the kubelets.

The kubelet authorizes every request through the API server (webhook mode),
so ``kubectl logs/exec/port-forward`` and metrics scraping through the API
server only work once the identity the API server presents to kubelets
(its client certificate's CN, ``kube-apiserver-kubelet-client``) may use the
``nodes/*`` subresources. kubeadm binds the built-in
``system:kubelet-api-admin`` role for this; kubeprem spells the rules out so
the grant is visible and stable across versions.

Called once per cluster (not per machine) by the apply after the API
server is up. ``to_yaml`` is also the YAML writer of the other control-plane
renderers (audit policy, scheduler configuration).
"""

from __future__ import annotations

from typing import Any

from kubeprem.site.model import Site
from kubeprem.yamltext import dump_yaml

APISERVER_KUBELET_USER = "kube-apiserver-kubelet-client"
ROLE_NAME = "kubeprem:kube-apiserver-to-kubelet"

KUBELET_SUBRESOURCES = ("nodes/proxy", "nodes/stats", "nodes/log", "nodes/spec", "nodes/metrics")


def to_yaml(*docs: Any) -> str:
    return dump_yaml(*docs)


def manifests(site: Site) -> list[dict[str, Any]]:
    """ClusterRole and ClusterRoleBinding, in apply order."""
    del site  # the same for every site; taken so callers treat all renderers alike
    labels = {"app.kubernetes.io/managed-by": "kubeprem"}
    role: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": ROLE_NAME, "labels": dict(labels)},
        "rules": [
            {
                "apiGroups": [""],
                "resources": list(KUBELET_SUBRESOURCES),
                # the kubelet maps HTTP methods to these verbs (GET->get, POST->create, ...)
                "verbs": ["get", "create", "update", "patch", "delete"],
            }
        ],
    }
    binding: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": ROLE_NAME, "labels": dict(labels)},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": ROLE_NAME,
        },
        "subjects": [
            {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "User",
                "name": APISERVER_KUBELET_USER,
            }
        ],
    }
    return [role, binding]


def manifests_text(site: Site) -> str:
    return to_yaml(*manifests(site))

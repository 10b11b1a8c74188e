"""The Kubernetes API boundary: the only layer besides ``transport`` that does I/O.

api        KubeAPI (the interface), KubeError
http       HttpKubeAPI: the real API, stdlib TLS with a kubeconfig's client cert
fake       FakeKubeAPI: in memory, for unit tests
config     kubeconfig parsing
resources  kind -> (group/version, plural, namespaced, apply rank); ordering
rollout    ordered apply/delete, rollout waits (kubectl semantics)
"""

from kubeprem.kube.api import FIELD_MANAGER, KubeAPI, KubeError, Obj
from kubeprem.kube.config import KubeConfig, load_kubeconfig, parse_kubeconfig
from kubeprem.kube.fake import FakeKubeAPI
from kubeprem.kube.http import HttpKubeAPI, build_request
from kubeprem.kube.resources import KINDS, apply_order, delete_order, ident, path, rank_of
from kubeprem.kube.rollout import apply_all, delete_all, rollout_state, wait_rolled_out

__all__ = [
    "FIELD_MANAGER",
    "KINDS",
    "FakeKubeAPI",
    "HttpKubeAPI",
    "KubeAPI",
    "KubeConfig",
    "KubeError",
    "Obj",
    "apply_all",
    "apply_order",
    "build_request",
    "delete_all",
    "delete_order",
    "ident",
    "load_kubeconfig",
    "parse_kubeconfig",
    "path",
    "rank_of",
    "rollout_state",
    "wait_rolled_out",
]

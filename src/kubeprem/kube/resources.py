"""Where each kind lives in the API, and the order objects are applied in.

Pure data, used by the HTTP client (paths), by the fake API (namespacing)
and by the apps workflows (ordering). ``KINDS`` is the one table of the
kinds kubeprem sends: API group/version, plural, namespaced, and the apply
rank. Lower ranks are applied first and deleted last, so a Namespace exists
before anything in it, a StorageClass before the claims that name it, and a
headless Service before the StatefulSet whose pods get their DNS names from
it. Objects of equal rank keep the order the builder gave them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from kubeprem.errors import InputError


@dataclass(frozen=True)
class Kind:
    kind: str
    api_version: str  # "v1" or "group/version"
    plural: str
    namespaced: bool
    rank: int

    @property
    def base(self) -> str:
        """``/api/v1`` or ``/apis/<group>/<version>``."""
        if "/" in self.api_version:
            return f"/apis/{self.api_version}"
        return f"/api/{self.api_version}"


# rank: apply order. Headless Services are ranked apart (see rank_of).
KINDS: tuple[Kind, ...] = (
    Kind("Namespace", "v1", "namespaces", False, 0),
    Kind("ServiceAccount", "v1", "serviceaccounts", True, 10),
    Kind("Secret", "v1", "secrets", True, 10),
    Kind("ConfigMap", "v1", "configmaps", True, 10),
    # before the pods it guards: a pod never runs unguarded by a policy meant for it
    Kind("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies", True, 15),
    Kind("ClusterRole", "rbac.authorization.k8s.io/v1", "clusterroles", False, 20),
    Kind("ClusterRoleBinding", "rbac.authorization.k8s.io/v1", "clusterrolebindings", False, 20),
    Kind("Role", "rbac.authorization.k8s.io/v1", "roles", True, 20),
    Kind("RoleBinding", "rbac.authorization.k8s.io/v1", "rolebindings", True, 20),
    Kind("StorageClass", "storage.k8s.io/v1", "storageclasses", False, 30),
    Kind("PersistentVolume", "v1", "persistentvolumes", False, 31),
    Kind("PersistentVolumeClaim", "v1", "persistentvolumeclaims", True, 40),
    Kind("Endpoints", "v1", "endpoints", True, 49),
    Kind("Service", "v1", "services", True, 52),  # headless ones: HEADLESS_RANK
    Kind("StatefulSet", "apps/v1", "statefulsets", True, 60),
    Kind("Deployment", "apps/v1", "deployments", True, 60),
    Kind("DaemonSet", "apps/v1", "daemonsets", True, 60),
    Kind("Job", "batch/v1", "jobs", True, 65),
    # policy/v1 arrives in 1.21; 1.20 (the lab) serves policy/v1beta1 only
    Kind("PodDisruptionBudget", "policy/v1beta1", "poddisruptionbudgets", True, 70),
    Kind("Pod", "v1", "pods", True, 80),
    Kind("Node", "v1", "nodes", False, 90),
)
HEADLESS_RANK = 50  # before every other Service and every workload

BY_KIND: Mapping[str, Kind] = {k.kind: k for k in KINDS}

# Kinds served under another version from some release on: (from, apiVersion).
# PodDisruptionBudget: policy/v1 from 1.21, and policy/v1beta1 is gone in 1.25.
MOVED: Mapping[str, tuple[tuple[int, int], str]] = {
    "PodDisruptionBudget": ((1, 21), "policy/v1"),
}

Minor = tuple[int, int]  # (major, minor) of the API server, e.g. (1, 20)


def kind_of(kind: str, minor: Minor | None = None) -> Kind:
    """The kind's API details; with ``minor``, as that release serves it."""
    try:
        k = BY_KIND[kind]
    except KeyError:
        known = ", ".join(sorted(BY_KIND))
        raise InputError(f"kubeprem does not handle the kind {kind!r}; known: {known}") from None
    moved = MOVED.get(kind)
    if minor is not None and moved is not None and minor >= moved[0]:
        return replace(k, api_version=moved[1])
    return k


def for_release(objects: Sequence[Mapping[str, Any]], minor: Minor) -> list[dict[str, Any]]:
    """``objects`` with the apiVersion release ``minor`` serves for each moved
    kind (others as they are). Pure."""
    out = []
    for obj in objects:
        o = dict(obj)
        kind = str(o.get("kind"))
        if kind in MOVED:
            o["apiVersion"] = kind_of(kind, minor).api_version
        out.append(o)
    return out


def is_headless(obj: Mapping[str, Any]) -> bool:
    spec = obj.get("spec") or {}
    return obj.get("kind") == "Service" and spec.get("clusterIP") == "None"


def rank_of(obj: Mapping[str, Any]) -> int:
    if is_headless(obj):
        return HEADLESS_RANK
    return kind_of(str(obj.get("kind"))).rank


def apply_order(objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``objects`` in apply order; stable within a rank."""
    return sorted(objects, key=rank_of)


def delete_order(objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The reverse of ``apply_order``: workloads go before what they use."""
    return list(reversed(apply_order(objects)))


def path(
    kind: str, name: str | None = None, namespace: str | None = None, minor: Minor | None = None
) -> str:
    """The API path of a collection (``name=None``) or of one object (as
    release ``minor`` serves it, when given)."""
    k = kind_of(kind, minor)
    out = k.base
    if k.namespaced:
        if not namespace:
            raise InputError(f"{kind} {name or ''} needs a namespace")
        out += f"/namespaces/{quote(namespace, safe='')}"
    out += f"/{k.plural}"
    if name is not None:
        out += f"/{quote(name, safe='')}"
    return out


def ident(obj: Mapping[str, Any]) -> str:
    """``Kind namespace/name`` for messages."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name", "?")
    return f"{obj.get('kind')} {ns}/{name}" if ns else f"{obj.get('kind')} {name}"


__all__ = [
    "BY_KIND",
    "HEADLESS_RANK",
    "KINDS",
    "MOVED",
    "Kind",
    "Minor",
    "apply_order",
    "delete_order",
    "for_release",
    "ident",
    "is_headless",
    "kind_of",
    "path",
    "rank_of",
]

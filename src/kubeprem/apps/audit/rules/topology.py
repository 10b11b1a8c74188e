"""Checks across objects: StatefulSets and their Services, spreading and
disruption budgets for replicas, NodePorts for internal components."""

from __future__ import annotations

import re
from collections.abc import Iterator

from kubeprem.apps.audit.heuristics import INTERNAL_PORTS
from kubeprem.apps.audit.index import Index
from kubeprem.apps.audit.k8s import (
    POD_SPEC_PATHS,
    as_list,
    as_map,
    dig,
    replicas,
    selector_matches,
    template_labels,
)
from kubeprem.apps.audit.model import Hit, Manifest


def _service_name(m: Manifest) -> str:
    return str(as_map(m.obj.get("spec")).get("serviceName") or "")


def statefulset_without_service_name(m: Manifest, index: Index) -> Iterator[Hit]:
    if m.kind == "StatefulSet" and not _service_name(m):
        yield Hit(
            ("spec",), "the StatefulSet names no serviceName: its pods get no stable DNS names"
        )


def statefulset_service_missing(m: Manifest, index: Index) -> Iterator[Hit]:
    name = _service_name(m)
    if m.kind == "StatefulSet" and name and index.find("Service", name, m) is None:
        yield Hit(("spec", "serviceName"), f"serviceName '{name}' names no Service in the input")


def statefulset_service_not_headless(m: Manifest, index: Index) -> Iterator[Hit]:
    name = _service_name(m)
    svc = index.find("Service", name, m) if m.kind == "StatefulSet" and name else None
    if svc is not None and as_map(svc.obj.get("spec")).get("clusterIP") != "None":
        yield Hit(
            ("spec", "serviceName"),
            f"Service '{name}' ({svc.file}:{svc.line}) is not headless (clusterIP: None), "
            "so the pods get no per-pod DNS names",
        )


def _replicated(m: Manifest) -> bool:
    return m.kind in ("StatefulSet", "Deployment") and (replicas(m) or 1) >= 2


def without_disruption_budget(m: Manifest, index: Index) -> Iterator[Hit]:
    if not _replicated(m):
        return
    labels = template_labels(m)
    for pdb in index.of_kind("PodDisruptionBudget", m):
        if selector_matches(as_map(pdb.obj.get("spec")).get("selector"), labels):
            return
    yield Hit(
        ("spec", "replicas"),
        f"{replicas(m)} replicas and no PodDisruptionBudget selects them: a node drain "
        "may evict all of them at once",
    )


def without_spreading(m: Manifest, index: Index) -> Iterator[Hit]:
    if not _replicated(m):
        return
    spec = as_map(dig(m.obj, POD_SPEC_PATHS[m.kind]))
    if as_map(spec.get("affinity")).get("podAntiAffinity") or spec.get("topologySpreadConstraints"):
        return
    yield Hit(
        ("spec", "replicas"),
        f"{replicas(m)} replicas with neither podAntiAffinity nor topologySpreadConstraints: "
        "they may all run on one node and fail together",
    )


def _refers_to(text: str, name: str, namespace: str) -> bool:
    names = "|".join(re.escape(n) for n in (f"{name}.{namespace}", name))
    return re.search(rf"(?<![A-Za-z0-9.\-])(?:{names})(?![A-Za-z0-9\-])", text) is not None


def internal_nodeport(m: Manifest, index: Index) -> Iterator[Hit]:
    spec = as_map(m.obj.get("spec"))
    if m.kind != "Service" or spec.get("type") != "NodePort":
        return
    ports = [as_map(p) for p in as_list(spec.get("ports"))]
    internal = [
        f"{p.get('port')} ({INTERNAL_PORTS[p['port']]})"
        for p in ports
        if isinstance(p.get("port"), int) and p["port"] in INTERNAL_PORTS
    ]
    users = sorted(
        {
            f"{r.owner.kind}/{r.owner.name}"
            for r in index.references
            if r.owner is not m and _refers_to(r.text, m.name, m.namespace or "default")
        }
    )
    reasons = []
    if internal:
        reasons.append(f"it exposes in-cluster protocol ports {', '.join(internal)}")
    if users:
        verb = "reaches" if len(users) == 1 else "reach"
        reasons.append(f"{', '.join(users)} {verb} it by its cluster DNS name")
    if reasons:
        yield Hit(
            ("spec", "type"),
            f"NodePort opens this Service on every node, but {' and '.join(reasons)}",
        )

"""Pure helpers over Kubernetes objects: pod specs, containers, selectors.

The rules call these instead of walking raw dictionaries themselves, so the
knowledge of where each kind keeps its pod template lives in one place.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kubeprem.apps.audit.model import Manifest, YPath

POD_SPEC_PATHS: dict[str, YPath] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# Kinds whose pods run until stopped: probes matter for these.
LONG_RUNNING = {
    "Pod",
    "Deployment",
    "ReplicaSet",
    "ReplicationController",
    "StatefulSet",
    "DaemonSet",
}
# Kinds that set a replica count (DaemonSets run one pod per node).
REPLICATED = {"Deployment", "ReplicaSet", "ReplicationController", "StatefulSet"}


def dig(obj: Any, path: YPath) -> Any:
    """The value at ``path`` inside nested mappings and lists, or None."""
    cur = obj
    for part in path:
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                return None
        elif not isinstance(cur, Mapping):
            return None
        cur = cur[part] if isinstance(part, int) else cur.get(part)
    return cur


def as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def pod_spec(m: Manifest) -> tuple[YPath, Mapping[str, Any]] | None:
    """The pod spec of a workload and its path, or None for other kinds."""
    path = POD_SPEC_PATHS.get(m.kind)
    if path is None:
        return None
    spec = dig(m.obj, path)
    return (path, spec) if isinstance(spec, Mapping) else None


def containers(m: Manifest, *, init: bool = False) -> Iterator[tuple[YPath, Mapping[str, Any]]]:
    """(path, container) for the main containers, plus init containers if asked."""
    found = pod_spec(m)
    if found is None:
        return
    path, spec = found
    groups = ("containers", "initContainers", "ephemeralContainers") if init else ("containers",)
    for group in groups:
        for i, c in enumerate(as_list(spec.get(group))):
            if isinstance(c, Mapping):
                yield (*path, group, i), c


def replicas(m: Manifest) -> int | None:
    """The replica count (1 when unset), or None for kinds without one."""
    if m.kind not in REPLICATED:
        return None
    value = dig(m.obj, ("spec", "replicas"))
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def template_labels(m: Manifest) -> Mapping[str, Any]:
    if m.kind == "Pod":
        return as_map(m.metadata.get("labels"))
    path = POD_SPEC_PATHS.get(m.kind)
    if path is None:
        return {}
    return as_map(dig(m.obj, (*path[:-1], "metadata", "labels")))


def selector_matches(selector: Any, labels: Mapping[str, Any]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects ``labels``.
    An empty or missing selector selects nothing here, as for a PDB."""
    sel = as_map(selector)
    match_labels = as_map(sel.get("matchLabels"))
    expressions = [e for e in as_list(sel.get("matchExpressions")) if isinstance(e, Mapping)]
    if not match_labels and not expressions:
        return False
    if any(str(labels.get(k)) != str(v) for k, v in match_labels.items()):
        return False
    for expr in expressions:
        key, op = str(expr.get("key")), str(expr.get("operator"))
        values = {str(v) for v in as_list(expr.get("values"))}
        present = key in labels
        value = str(labels.get(key))
        ok = {
            "In": present and value in values,
            "NotIn": not (present and value in values),
            "Exists": present,
            "DoesNotExist": not present,
        }.get(op, False)
        if not ok:
            return False
    return True


def same_namespace(a: Manifest, b: Manifest) -> bool:
    return (a.namespace or "default") == (b.namespace or "default")


def mounted_volumes(m: Manifest) -> dict[str, list[tuple[YPath, Mapping[str, Any]]]]:
    """Volume name -> the (path, volumeMount) entries that mount it, in any container."""
    out: dict[str, list[tuple[YPath, Mapping[str, Any]]]] = {}
    for cpath, c in containers(m, init=True):
        for i, vm in enumerate(as_list(c.get("volumeMounts"))):
            if isinstance(vm, Mapping) and vm.get("name"):
                out.setdefault(str(vm["name"]), []).append(((*cpath, "volumeMounts", i), vm))
    return out


def volumes(m: Manifest) -> Iterator[tuple[YPath, Mapping[str, Any]]]:
    found = pod_spec(m)
    if found is None:
        return
    path, spec = found
    for i, v in enumerate(as_list(spec.get("volumes"))):
        if isinstance(v, Mapping):
            yield (*path, "volumes", i), v


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside a nested value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)

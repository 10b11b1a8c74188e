"""Checks for state kept where it will be lost, diverge, or never attach."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kubeprem.apps.audit.heuristics import is_node_agent_path
from kubeprem.apps.audit.index import Index
from kubeprem.apps.audit.k8s import as_list, as_map, containers, mounted_volumes, replicas, volumes
from kubeprem.apps.audit.model import Hit, Manifest, Severity, YPath

# hostPath types that are not directories or files of data.
_NOT_DATA_TYPES = {"Socket", "CharDevice", "BlockDevice"}
_SINGLE_NODE_MODES = {"ReadWriteOnce", "ReadWriteOncePod"}
# Kinds that run several pods from one template at once.
_MANY_PODS = {"Deployment", "ReplicaSet", "ReplicationController", "StatefulSet", "DaemonSet"}


def _host_paths(m: Manifest) -> Iterator[tuple[YPath, Mapping[str, Any]]]:
    for vpath, vol in volumes(m):
        hp = as_map(vol.get("hostPath"))
        if hp:
            yield (*vpath, "hostPath", "path"), {**hp, "volume": vol.get("name")}


def host_path_outside_allowlist(m: Manifest, index: Index) -> Iterator[Hit]:
    for path, hp in _host_paths(m):
        if not is_node_agent_path(str(hp.get("path") or "")):
            yield Hit(path, f"volume '{hp['volume']}' mounts the node's {hp.get('path')}")


def host_path_system(m: Manifest, index: Index) -> Iterator[Hit]:
    for path, hp in _host_paths(m):
        if is_node_agent_path(str(hp.get("path") or "")):
            yield Hit(path, f"volume '{hp['volume']}' mounts the node's {hp.get('path')}")


def _pod_count(m: Manifest) -> int:
    """How many pods run the template at once (a DaemonSet: several)."""
    if m.kind == "DaemonSet":
        return 2
    return replicas(m) or 1


def _claims(m: Manifest) -> Iterator[tuple[YPath, str]]:
    mounted = mounted_volumes(m)
    for vpath, vol in volumes(m):
        claim = as_map(vol.get("persistentVolumeClaim")).get("claimName")
        if claim and str(vol.get("name")) in mounted:
            yield (*vpath, "persistentVolumeClaim", "claimName"), str(claim)


def shared_single_node_claim(m: Manifest, index: Index) -> Iterator[Hit]:
    if m.kind not in _MANY_PODS or _pod_count(m) < 2:
        return
    for path, claim in _claims(m):
        pvc = index.find("PersistentVolumeClaim", claim, m)
        modes = (
            {str(x) for x in as_list(as_map(pvc.obj.get("spec")).get("accessModes"))}
            if pvc
            else set()
        )
        single = modes & _SINGLE_NODE_MODES
        if single and "ReadWriteMany" not in modes:
            yield Hit(
                path,
                f"{_pod_count_text(m)} pods mount claim '{claim}', which is "
                f"{'/'.join(sorted(single))}: pods on other nodes cannot attach it",
            )


def shared_unknown_claim(m: Manifest, index: Index) -> Iterator[Hit]:
    if m.kind not in _MANY_PODS or _pod_count(m) < 2:
        return
    for path, claim in _claims(m):
        if index.find("PersistentVolumeClaim", claim, m) is None:
            yield Hit(
                path,
                f"{_pod_count_text(m)} pods mount claim '{claim}', which is not in the input: "
                "unless it is ReadWriteMany, pods on other nodes cannot attach it",
            )


def _pod_count_text(m: Manifest) -> str:
    return "all" if m.kind == "DaemonSet" else str(replicas(m))


def _node_local_state(m: Manifest) -> Iterator[tuple[YPath, str]]:
    """hostPath volumes (outside the node-agent paths) mounted writable."""
    if m.kind not in _MANY_PODS - {"DaemonSet"}:
        return
    mounted = mounted_volumes(m)
    for vpath, vol in volumes(m):
        hp = as_map(vol.get("hostPath"))
        name = str(vol.get("name"))
        if not hp or is_node_agent_path(str(hp.get("path") or "")):
            continue
        if str(hp.get("type") or "") in _NOT_DATA_TYPES:
            continue
        if any(not vm.get("readOnly") for _, vm in mounted.get(name, [])):
            yield (*vpath, "hostPath"), name


def replicated_node_local_state(m: Manifest, index: Index) -> Iterator[Hit]:
    if (replicas(m) or 1) < 2:
        return
    for path, name in _node_local_state(m):
        yield Hit(
            path,
            f"{replicas(m)} replicas write volume '{name}' on their own nodes: each keeps "
            "a different copy of the state",
        )


def single_node_local_state(m: Manifest, index: Index) -> Iterator[Hit]:
    if (replicas(m) or 1) >= 2:
        return
    for path, name in _node_local_state(m):
        yield Hit(
            path,
            f"volume '{name}' keeps state on the node: when the pod is rescheduled "
            "elsewhere it starts empty",
        )


def volume_mounted_twice(m: Manifest, index: Index) -> Iterator[Hit]:
    for cpath, c in containers(m, init=True):
        seen: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for i, vm in enumerate(as_list(c.get("volumeMounts"))):
            vm = as_map(vm)
            key = (str(vm.get("name")), str(vm.get("subPath") or vm.get("subPathExpr") or ""))
            seen.setdefault(key, []).append((i, str(vm.get("mountPath"))))
        for (name, _), mounts in seen.items():
            paths = sorted({p for _, p in mounts})
            if len(paths) > 1:
                yield Hit(
                    (*cpath, "volumeMounts", mounts[1][0]),
                    f"container '{c.get('name')}' mounts volume '{name}' at {len(paths)} "
                    f"paths without a subPath: {', '.join(paths)} all show the same files",
                )


def claim_without_storage_class(m: Manifest, index: Index) -> Iterator[Hit]:
    severity = Severity.ERROR if index.options.no_default_storage_class else None
    where = (
        "and the cluster has no default StorageClass: it stays Pending"
        if severity
        else "so it gets the cluster's default StorageClass, whatever that is"
    )
    if m.kind == "PersistentVolumeClaim":
        spec = as_map(m.obj.get("spec"))
        if "storageClassName" not in spec and not spec.get("volumeName"):
            yield Hit(("spec",), f"the claim names no storageClassName {where}", severity)
    elif m.kind == "StatefulSet":
        for i, tpl in enumerate(as_list(as_map(m.obj.get("spec")).get("volumeClaimTemplates"))):
            spec = as_map(as_map(tpl).get("spec"))
            if "storageClassName" not in spec:
                name = as_map(as_map(tpl).get("metadata")).get("name")
                yield Hit(
                    ("spec", "volumeClaimTemplates", i),
                    f"volumeClaimTemplate '{name}' names no storageClassName {where}",
                    severity,
                )

"""Local persistent volumes: one directory per volume on each worker.

Called by ``kubeprem storage SITE``. ``storage_objects`` is pure: the
StorageClass ``local`` (no provisioner, WaitForFirstConsumer so a claim is
bound only once its pod is scheduled, the cluster default) and, for each
worker, ``count`` PersistentVolumes pinned to it by nodeAffinity on
``kubernetes.io/hostname``, reclaim policy Retain: a released volume keeps
its data until an operator deals with it. ``make_directories`` creates the
directories on the workers through the transport (argument lists only);
``volume_report`` classifies the volumes the API returns (bound, released,
free) for ``kubeprem storage status``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubeprem.apps import base as b
from kubeprem.errors import InputError
from kubeprem.site.model import Site
from kubeprem.transport.base import Transport

CLASS = "local"
ROOT = "/var/lib/kubeprem/volumes"
DEFAULT_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
_QUANTITY = re.compile(r"^[0-9]+(Mi|Gi|Ti)$")


@dataclass(frozen=True)
class StoragePlan:
    size: str = "10Gi"
    count: int = 4  # volumes per worker
    root: str = ROOT

    def check(self) -> None:
        if not _QUANTITY.match(self.size):
            raise InputError(f"volume size {self.size!r} must look like 10Gi, 500Mi or 1Ti")
        if not 1 <= self.count <= 100:
            raise InputError(f"volumes per worker must be 1 to 100, not {self.count}")
        if not self.root.startswith("/") or ".." in self.root.split("/"):
            raise InputError(f"volume folder {self.root!r} must be an absolute path")


def volume_name(worker: str, index: int) -> str:
    return f"local-{worker}-{index}"


def volume_path(plan: StoragePlan, index: int) -> str:
    return f"{plan.root.rstrip('/')}/vol{index}"


def storage_class() -> b.Obj:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": b.meta(CLASS, None, b.labels("storage", "class"), {DEFAULT_ANNOTATION: "true"}),
        "provisioner": "kubernetes.io/no-provisioner",
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "WaitForFirstConsumer",
    }


def persistent_volume(worker: str, index: int, plan: StoragePlan) -> b.Obj:
    lbls = {**b.labels("storage", "volume"), "kubeprem.io/node": worker}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": b.meta(volume_name(worker, index), None, lbls),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": plan.size},
            "local": {"path": volume_path(plan, index)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [worker],
                                }
                            ]
                        }
                    ]
                }
            },
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": CLASS,
            "volumeMode": "Filesystem",
        },
    }


def storage_objects(site: Site, plan: StoragePlan) -> list[b.Obj]:
    plan.check()
    if not site.workers:
        raise InputError("the site has no machine with the worker role: nowhere to put volumes")
    out = [storage_class()]
    for worker in site.workers:
        out += [persistent_volume(worker.name, i, plan) for i in range(plan.count)]
    return out


def mkdir_argv(plan: StoragePlan) -> list[str]:
    """The one command a worker runs: every volume directory, root-owned, 0700;
    kubelet gives each pod's fsGroup access when it mounts the volume."""
    return ["mkdir", "-p", "-m", "0700", *(volume_path(plan, i) for i in range(plan.count))]


async def make_directories(transport: Transport, plan: StoragePlan) -> None:
    """Create the volume directories on one worker (idempotent)."""
    await transport.run(["mkdir", "-p", "-m", "0711", plan.root], step="storage: volume folder")
    await transport.run(mkdir_argv(plan), step="storage: volume directories")


@dataclass(frozen=True)
class VolumeRow:
    name: str
    node: str
    size: str
    phase: str  # Available (free), Bound, Released, Failed
    claim: str  # namespace/name, or ""
    path: str


def volume_report(volumes: Iterable[Mapping[str, Any]]) -> list[VolumeRow]:
    rows = []
    for pv in volumes:
        spec = pv.get("spec") or {}
        if spec.get("storageClassName") != CLASS:
            continue
        ref = spec.get("claimRef") or {}
        terms = ((spec.get("nodeAffinity") or {}).get("required") or {}).get(
            "nodeSelectorTerms"
        ) or [{}]
        exprs = terms[0].get("matchExpressions") or [{}]
        rows.append(
            VolumeRow(
                name=str((pv.get("metadata") or {}).get("name")),
                node=",".join(exprs[0].get("values") or []),
                size=str((spec.get("capacity") or {}).get("storage", "")),
                phase=str((pv.get("status") or {}).get("phase", "Pending")),
                claim=f"{ref.get('namespace')}/{ref.get('name')}" if ref else "",
                path=str((spec.get("local") or {}).get("path", "")),
            )
        )
    return sorted(rows, key=lambda r: (r.node, r.name))


def summary(rows: Sequence[VolumeRow]) -> dict[str, int]:
    out = {"bound": 0, "released": 0, "free": 0, "other": 0}
    for r in rows:
        key = {"Bound": "bound", "Released": "released", "Available": "free"}.get(r.phase, "other")
        out[key] += 1
    return out


def default_classes(classes: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of the StorageClasses marked default."""
    out = []
    for sc in classes:
        ann = (sc.get("metadata") or {}).get("annotations") or {}
        if ann.get(DEFAULT_ANNOTATION) == "true" or (
            ann.get("storageclass.beta.kubernetes.io/is-default-class") == "true"
        ):
            out.append(str(sc["metadata"]["name"]))
    return out


__all__ = [
    "CLASS",
    "StoragePlan",
    "VolumeRow",
    "default_classes",
    "make_directories",
    "mkdir_argv",
    "persistent_volume",
    "storage_class",
    "storage_objects",
    "summary",
    "volume_report",
]

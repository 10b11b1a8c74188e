"""Ordered apply and delete, and waits with kubectl's rollout semantics.

``rollout_state`` is pure: it reads a StatefulSet's or Deployment's status
the way ``kubectl rollout status`` does and says whether the rollout is done
and, if not, why. ``wait_rolled_out`` polls it through a ``KubeAPI`` (no
watches: simpler, and a lost watch never hangs a deploy); clock and sleep
are passed in so tests run instantly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kubeprem.errors import OperationError
from kubeprem.kube.api import KubeAPI, Obj
from kubeprem.kube.resources import apply_order, delete_order, ident

WAITED = ("StatefulSet", "Deployment")


def rollout_state(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """(done, why not) for a StatefulSet or Deployment, as kubectl decides it."""
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    want = int(spec.get("replicas", 1))
    gen = int(meta.get("generation") or 0)
    if int(status.get("observedGeneration") or 0) < gen:
        return False, "waiting for the controller to observe the new spec"
    updated = int(status.get("updatedReplicas") or 0)
    if kind == "StatefulSet":
        strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
        if strategy != "RollingUpdate":
            return True, ""
        ready = int(status.get("readyReplicas") or 0)
        if ready < want:
            return False, f"{ready} of {want} pods ready"
        partition = int(
            ((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition") or 0
        )
        if partition:
            if updated < want - partition:
                return False, f"{updated} of {want - partition} pods updated"
            return True, ""
        if status.get("updateRevision") != status.get("currentRevision"):
            return False, f"{updated} of {want} pods updated to the new revision"
        return True, ""
    if kind == "Deployment":
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "Progressing"
                and cond.get("reason") == "ProgressDeadlineExceeded"
            ):
                return False, "progress deadline exceeded"
        if updated < want:
            return False, f"{updated} of {want} pods updated"
        total = int(status.get("replicas") or 0)
        if total > updated:
            return False, f"{total - updated} old pods pending termination"
        available = int(status.get("availableReplicas") or 0)
        if available < updated:
            return False, f"{available} of {updated} updated pods available"
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        if conds.get("Available") != "True":
            return False, "not Available"
        return True, ""
    return True, ""


def apply_all(
    api: KubeAPI,
    objects: Iterable[Mapping[str, Any]],
    *,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Obj]:
    """Server-side apply every object in apply order; the stored objects."""
    out = []
    for obj in apply_order(objects):
        out.append(api.apply(obj, dry_run=dry_run))
        progress(("validated " if dry_run else "applied ") + ident(obj))
    return out


def delete_all(
    api: KubeAPI,
    objects: Iterable[Mapping[str, Any]],
    *,
    progress: Callable[[str], None] = lambda _: None,
) -> list[str]:
    """Delete in reverse apply order; the objects that existed."""
    gone = []
    for obj in delete_order(objects):
        meta = obj.get("metadata") or {}
        if api.delete(str(obj.get("kind")), str(meta.get("name")), meta.get("namespace")):
            gone.append(ident(obj))
            progress("deleted " + ident(obj))
    return gone


def wait_rolled_out(
    api: KubeAPI,
    objects: Sequence[Mapping[str, Any]],
    *,
    timeout: float = 600.0,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] = lambda _: None,
) -> None:
    """Poll until every StatefulSet and Deployment in ``objects`` is rolled out."""
    pending = [o for o in objects if o.get("kind") in WAITED]
    deadline = clock() + timeout
    last: dict[str, str] = {}
    while pending:
        still = []
        for obj in pending:
            meta = obj["metadata"]
            live = api.get(str(obj["kind"]), meta["name"], meta.get("namespace"))
            if live is None:
                raise OperationError(f"{ident(obj)} vanished while waiting for its rollout")
            done, why = rollout_state(live)
            if not done:
                still.append(obj)
                if last.get(ident(obj)) != why:
                    progress(f"{ident(obj)}: {why}")
                last[ident(obj)] = why
            else:
                progress(f"{ident(obj)}: rolled out")
        pending = still
        if not pending:
            return
        if clock() >= deadline:
            detail = "; ".join(f"{ident(o)}: {last[ident(o)]}" for o in pending)
            raise OperationError(f"rollout not finished after {timeout:.0f} s: {detail}")
        sleep(interval)


__all__ = ["apply_all", "delete_all", "rollout_state", "wait_rolled_out"]

"""Checks on each container: resources, probes, images."""

from __future__ import annotations

from collections.abc import Iterator

from kubeprem.apps.audit.heuristics import image_tag
from kubeprem.apps.audit.index import Index
from kubeprem.apps.audit.k8s import LONG_RUNNING, as_map, containers
from kubeprem.apps.audit.model import Hit, Manifest


def missing_requests(m: Manifest, index: Index) -> Iterator[Hit]:
    for cpath, c in containers(m):
        res = as_map(c.get("resources"))
        requests, limits = as_map(res.get("requests")), as_map(res.get("limits"))
        # A limit without a request makes the request equal to the limit.
        missing = [r for r in ("cpu", "memory") if r not in requests and r not in limits]
        if missing:
            yield Hit(
                (*cpath, "resources"),
                f"container '{c.get('name')}' requests no {' and no '.join(missing)}",
            )


def missing_memory_limit(m: Manifest, index: Index) -> Iterator[Hit]:
    for cpath, c in containers(m):
        if "memory" not in as_map(as_map(c.get("resources")).get("limits")):
            yield Hit((*cpath, "resources"), f"container '{c.get('name')}' has no memory limit")


def _probe_missing(m: Manifest, probe: str) -> Iterator[Hit]:
    if m.kind not in LONG_RUNNING:
        return
    for cpath, c in containers(m):
        if not c.get(probe):
            yield Hit(cpath, f"container '{c.get('name')}' has no {probe}")


def missing_readiness(m: Manifest, index: Index) -> Iterator[Hit]:
    return _probe_missing(m, "readinessProbe")


def missing_liveness(m: Manifest, index: Index) -> Iterator[Hit]:
    return _probe_missing(m, "livenessProbe")


def image_without_tag(m: Manifest, index: Index) -> Iterator[Hit]:
    for cpath, c in containers(m, init=True):
        image = str(c.get("image") or "")
        tag, pinned = image_tag(image)
        if image and tag is None and not pinned:
            yield Hit(
                (*cpath, "image"),
                f"container '{c.get('name')}': image {image} has no tag, so it means "
                "whatever 'latest' is when a node pulls it, and is pulled Always by default",
            )


def image_latest(m: Manifest, index: Index) -> Iterator[Hit]:
    for cpath, c in containers(m, init=True):
        image = str(c.get("image") or "")
        tag, pinned = image_tag(image)
        if tag == "latest" and not pinned:
            yield Hit(
                (*cpath, "image"),
                f"container '{c.get('name')}': image {image} moves; nodes may run "
                "different versions, and it is pulled Always by default",
            )


def pull_always(m: Manifest, index: Index) -> Iterator[Hit]:
    for cpath, c in containers(m, init=True):
        if c.get("imagePullPolicy") == "Always":
            yield Hit(
                (*cpath, "imagePullPolicy"),
                f"container '{c.get('name')}' pulls its image on every start: without "
                "a reachable registry (air-gapped sites) the pod cannot restart",
            )

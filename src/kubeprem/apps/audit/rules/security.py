"""Checks on privileges: privileged containers, added capabilities, host namespaces.
Each may be needed (a media server, a CNI agent); accept it with a reason."""

from __future__ import annotations

from collections.abc import Iterator

from kubeprem.apps.audit.heuristics import HARMLESS_CAPABILITIES
from kubeprem.apps.audit.index import Index
from kubeprem.apps.audit.k8s import as_list, as_map, containers, pod_spec
from kubeprem.apps.audit.model import Hit, Manifest


def privileged(m: Manifest, index: Index) -> Iterator[Hit]:
    for cpath, c in containers(m, init=True):
        if as_map(c.get("securityContext")).get("privileged") is True:
            yield Hit(
                (*cpath, "securityContext", "privileged"),
                f"container '{c.get('name')}' is privileged: it is root on the node",
            )


def added_capabilities(m: Manifest, index: Index) -> Iterator[Hit]:
    for cpath, c in containers(m, init=True):
        caps = as_map(as_map(c.get("securityContext")).get("capabilities"))
        added = [str(x) for x in as_list(caps.get("add")) if str(x) not in HARMLESS_CAPABILITIES]
        if added:
            yield Hit(
                (*cpath, "securityContext", "capabilities", "add"),
                f"container '{c.get('name')}' adds capabilities {', '.join(added)}",
            )


def host_namespaces(m: Manifest, index: Index) -> Iterator[Hit]:
    found = pod_spec(m)
    if found is None:
        return
    path, spec = found
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) is True:
            yield Hit((*path, field), f"the pods share the node's namespace: {field}: true")

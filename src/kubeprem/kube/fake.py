"""``FakeKubeAPI``: an in-memory API server for unit tests of the apps workflows.

It implements ``KubeAPI`` with the behaviour the workflows depend on:
apply creates or replaces (and bumps ``metadata.generation`` when the spec
changes), dry runs store nothing, get of a missing object is None, delete
says whether the object existed, and list filters by namespace and by
``key=value`` label selectors. It records every call in ``calls`` so tests
can check order, and ``refuse`` makes it answer like an admission failure.
Workload status is whatever a test puts there (``set_status``).
"""

from __future__ import annotations

import builtins
import copy
from collections.abc import Callable, Mapping
from typing import Any

from kubeprem.kube.api import KubeError, Obj
from kubeprem.kube.resources import kind_of

Key = tuple[str, str | None, str]


class FakeKubeAPI:
    def __init__(self) -> None:
        self.objects: dict[Key, Obj] = {}
        self.calls: list[tuple[str, str, str | None, str]] = []  # verb, kind, ns, name
        # (verb, obj or key) -> error message; return None to accept
        self.refuse: Callable[[str, Mapping[str, Any]], str | None] = lambda verb, obj: None
        self.on_apply: Callable[[FakeKubeAPI, Obj], None] = lambda api, obj: None

    @staticmethod
    def _key(kind: str, name: str, namespace: str | None) -> Key:
        return (kind, namespace if kind_of(kind).namespaced else None, name)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        self.calls.append(("get", kind, namespace, name))
        obj = self.objects.get(self._key(kind, name, namespace))
        return copy.deepcopy(obj) if obj is not None else None

    def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[Obj]:
        self.calls.append(("list", kind, namespace, label_selector or ""))
        wanted = dict(p.split("=", 1) for p in (label_selector or "").split(",") if p)
        out = []
        for (k, ns, _), obj in sorted(self.objects.items(), key=lambda i: str(i[0])):
            if k != kind or (namespace and ns != namespace):
                continue
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if all(labels.get(a) == b for a, b in wanted.items()):
                out.append(copy.deepcopy(obj))
        return out

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> Obj:
        kind = str(obj["kind"])
        meta = obj["metadata"]
        name, ns = meta["name"], meta.get("namespace")
        self.calls.append(("dry-run" if dry_run else "apply", kind, ns, name))
        refused = self.refuse("dry-run" if dry_run else "apply", obj)
        if refused:
            raise KubeError("apply", kind, name, ns, 422, refused, "Invalid")
        key = self._key(kind, name, ns)
        old = self.objects.get(key)
        new: Obj = copy.deepcopy(dict(obj))
        gen = 1
        if old is not None:
            gen = old["metadata"].get("generation", 1)
            if old.get("spec") != new.get("spec"):
                gen += 1
            if "status" in old:
                new["status"] = old["status"]
        new["metadata"]["generation"] = gen
        if dry_run:
            return new
        self.objects[key] = new
        self.on_apply(self, new)
        return copy.deepcopy(new)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        self.calls.append(("delete", kind, namespace, name))
        return self.objects.pop(self._key(kind, name, namespace), None) is not None

    def close(self) -> None:
        pass

    # -- for tests -----------------------------------------------------------

    def put(self, obj: Mapping[str, Any]) -> None:
        """Store an object as if someone else had made it (no call recorded)."""
        meta = obj["metadata"]
        self.objects[self._key(str(obj["kind"]), meta["name"], meta.get("namespace"))] = (
            copy.deepcopy(dict(obj))
        )

    def set_status(
        self, kind: str, name: str, namespace: str | None, status: Mapping[str, Any]
    ) -> None:
        obj = self.objects[self._key(kind, name, namespace)]
        obj["status"] = copy.deepcopy(dict(status))

    def applied(self) -> builtins.list[tuple[str, str | None, str]]:
        return [(k, ns, n) for verb, k, ns, n in self.calls if verb == "apply"]


__all__ = ["FakeKubeAPI"]

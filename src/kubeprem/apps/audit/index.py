"""What rules need to know about the other objects in the input.

Built once per audit by the engine from every manifest: Services, claims,
disruption budgets, and the strings by which workloads refer to other
components (env values, commands, ConfigMap data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kubeprem.apps.audit.k8s import as_list, as_map, containers, strings_in
from kubeprem.apps.audit.model import AuditOptions, Manifest


@dataclass(frozen=True)
class Reference:
    """A string in one object that may name another (e.g. an env value)."""

    owner: Manifest
    text: str


@dataclass(frozen=True)
class Index:
    manifests: Sequence[Manifest]
    options: AuditOptions = field(default_factory=AuditOptions)
    references: Sequence[Reference] = field(default_factory=tuple)

    @classmethod
    def build(cls, manifests: Sequence[Manifest], options: AuditOptions) -> Index:
        refs: list[Reference] = []
        for m in manifests:
            if m.kind == "ConfigMap":
                refs.extend(Reference(m, s) for s in strings_in(m.obj.get("data")))
            for _, c in containers(m, init=True):
                for env in as_list(c.get("env")):
                    value = as_map(env).get("value")
                    if isinstance(value, str):
                        refs.append(Reference(m, value))
                for key in ("command", "args"):
                    refs.extend(Reference(m, s) for s in strings_in(c.get(key)))
        return cls(tuple(manifests), options, tuple(refs))

    def find(self, kind: str, name: str, near: Manifest) -> Manifest | None:
        """The object of ``kind`` named ``name`` in ``near``'s namespace."""
        ns = near.namespace or "default"
        for m in self.manifests:
            if m.kind == kind and m.name == name and (m.namespace or "default") == ns:
                return m
        return None

    def of_kind(self, kind: str, near: Manifest) -> list[Manifest]:
        ns = near.namespace or "default"
        return [m for m in self.manifests if m.kind == kind and (m.namespace or "default") == ns]

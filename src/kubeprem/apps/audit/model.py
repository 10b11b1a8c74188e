"""The values of the audit: severities, manifests with their lines, rules and findings.

Used by every other module of the audit package; holds no logic beyond small
accessors, so rules, engine and formatters share one vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubeprem.apps.audit.index import Index

YPath = tuple[str | int, ...]


class Severity(StrEnum):
    """How bad a finding is; ``rank`` orders them for ``--fail-on``."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object and where it came from.

    ``lines`` maps paths inside ``obj`` (keys and list indexes) to 1-based line
    numbers; objects built in memory have none, and findings on them carry the
    object's own line (``None``).
    """

    obj: Mapping[str, Any]
    file: str = "<memory>"
    line: int | None = None
    lines: Mapping[YPath, int] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind") or "")

    @property
    def metadata(self) -> Mapping[str, Any]:
        meta = self.obj.get("metadata")
        return meta if isinstance(meta, Mapping) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or "")

    @property
    def namespace(self) -> str | None:
        ns = self.metadata.get("namespace")
        return str(ns) if ns else None

    def line_of(self, path: YPath) -> int | None:
        """The line of ``path``, else of its nearest recorded parent, else the object's."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.line


@dataclass(frozen=True)
class Hit:
    """What a check reports: where in the object, and what it saw."""

    path: YPath
    message: str
    severity: Severity | None = None  # only when an option changes the rule's severity


Check = Callable[[Manifest, "Index"], Iterable[Hit]]


@dataclass(frozen=True)
class Rule:
    """One rule: an ID, a severity, a one-line explanation, the fix, a small check."""

    id: str
    severity: Severity
    title: str
    fix: str
    check: Check


@dataclass(frozen=True)
class Finding:
    """One problem found in one object. ``accepted`` holds the operator's reason
    when the object's ``kubeprem.io/accept`` annotation accepts this rule."""

    rule: str
    severity: Severity
    kind: str
    namespace: str | None
    name: str
    file: str
    line: int | None
    message: str
    fix: str
    object_line: int | None = None
    accepted: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "fix": self.fix,
            "accepted": self.accepted,
        }


@dataclass(frozen=True)
class AuditOptions:
    """Facts about the target cluster that the manifests cannot tell."""

    no_default_storage_class: bool = False

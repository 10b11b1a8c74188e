"""Run the rules over a set of manifests: ``audit_objects(objects) -> list[Finding]``.

Pure; called by the CLI on loaded files and by tests on the manifests that
kubeprem renders (plain dicts are accepted and get no file or line).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kubeprem.apps.audit.accept import parse_accepts
from kubeprem.apps.audit.index import Index
from kubeprem.apps.audit.model import AuditOptions, Finding, Manifest, Rule, Severity
from kubeprem.apps.audit.rules import RULES

NOT_ACCEPTABLE = {"KP090"}


def audit_objects(
    objects: Iterable[Manifest | Mapping[str, Any]],
    options: AuditOptions | None = None,
    rules: Sequence[Rule] = RULES,
) -> list[Finding]:
    """Every finding of ``rules`` on ``objects``, in file and line order."""
    manifests = [o if isinstance(o, Manifest) else Manifest(obj=o) for o in objects]
    index = Index.build(manifests, options or AuditOptions())
    known = {r.id for r in RULES} | {r.id for r in rules}
    findings: list[Finding] = []
    for m in manifests:
        accepted = parse_accepts(m, known).reasons
        for rule in rules:
            for hit in rule.check(m, index):
                findings.append(
                    Finding(
                        rule=rule.id,
                        severity=hit.severity or rule.severity,
                        kind=m.kind,
                        namespace=m.namespace,
                        name=m.name,
                        file=m.file,
                        line=m.line_of(hit.path),
                        message=hit.message,
                        fix=rule.fix,
                        object_line=m.line,
                        accepted=None if rule.id in NOT_ACCEPTABLE else accepted.get(rule.id),
                    )
                )
    findings.sort(key=lambda f: (f.file, f.object_line or 0, f.line or 0, f.rule))
    return findings


def failing(findings: Iterable[Finding], fail_on: Severity) -> list[Finding]:
    """The findings, not accepted, at or above ``fail_on``."""
    return [f for f in findings if f.accepted is None and f.severity.rank >= fail_on.rank]

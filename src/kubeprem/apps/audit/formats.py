"""Findings as text (grouped by object), JSON, or SARIF 2.1.0 for code scanning.

Pure functions from findings to a string; the CLI prints the result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import groupby
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from kubeprem import __version__
from kubeprem.apps.audit.model import Finding, Rule, Severity
from kubeprem.apps.audit.rules import RULES

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _object_label(f: Finding) -> str:
    name = f"{f.namespace}/{f.name}" if f.namespace else f.name
    return f"{f.kind} {name or '(unnamed)'}"


def _where(file: str, line: int | None) -> str:
    return f"{file}:{line}" if line is not None else file


def summary(findings: Sequence[Finding], objects: int) -> str:
    counts = {s: sum(1 for f in findings if f.severity is s and not f.accepted) for s in Severity}
    accepted = sum(1 for f in findings if f.accepted)
    parts = [
        f"{counts[Severity.ERROR]} errors",
        f"{counts[Severity.WARNING]} warnings",
        f"{counts[Severity.INFO]} info",
    ]
    tail = f" ({accepted} accepted)" if accepted else ""
    return f"{', '.join(parts)}{tail} in {objects} objects"


def to_text(findings: Sequence[Finding], objects: int) -> str:
    """Findings grouped by object: a header with file:line, then one entry each."""
    lines: list[str] = []

    def key(f: Finding) -> tuple[str, int, str, str, str]:
        return (f.file, f.object_line or 0, f.kind, f.namespace or "", f.name)

    for _, group in groupby(findings, key=key):
        items = list(group)
        first = items[0]
        lines.append(f"{_where(first.file, first.object_line)}: {_object_label(first)}")
        for f in items:
            at = f"line {f.line}" if f.line is not None else "-"
            lines.append(f"  {at:<9} {f.severity.value:<7} {f.rule}  {f.message}")
            if f.accepted:
                lines.append(f"{'':<21}accepted: {f.accepted}")
            else:
                lines.append(f"{'':<21}fix: {f.fix}")
        lines.append("")
    lines.append(summary(findings, objects))
    return "\n".join(lines) + "\n"


def to_json(findings: Sequence[Finding]) -> str:
    return json.dumps([f.as_dict() for f in findings], indent=2) + "\n"


def _uri(file: str) -> str:
    return quote(PurePath(file).as_posix(), safe="/:._-~")


def _sarif_rule(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.id,
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.title},
        "help": {"text": rule.fix},
        "defaultConfiguration": {"level": SARIF_LEVEL[rule.severity]},
    }


def _sarif_result(f: Finding, rule_index: dict[str, int]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": rule_index[f.rule],
        "level": SARIF_LEVEL[f.severity],
        "message": {"text": f"{_object_label(f)}: {f.message}. Fix: {f.fix}"},
    }
    location: dict[str, Any] = {
        "logicalLocations": [
            {"fullyQualifiedName": _object_label(f).replace(" ", "/"), "kind": "object"}
        ]
    }
    if not f.file.startswith("<"):
        physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(f.file)}}
        if f.line is not None:
            physical["region"] = {"startLine": f.line}
        location["physicalLocation"] = physical
    result["locations"] = [location]
    if f.accepted:
        result["suppressions"] = [{"kind": "inSource", "justification": f.accepted}]
    return result


def to_sarif(findings: Sequence[Finding], rules: Sequence[Rule] = RULES) -> str:
    """A SARIF 2.1.0 log with one run; accepted findings carry a suppression."""
    rule_index = {r.id: i for i, r in enumerate(rules)}
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "kubeprem-audit",
                        "version": __version__,
                        "rules": [_sarif_rule(r) for r in rules],
                    }
                },
                "results": [_sarif_result(f, rule_index) for f in findings],
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"

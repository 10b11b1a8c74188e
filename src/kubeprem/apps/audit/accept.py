"""The ``kubeprem.io/accept`` annotation: findings an operator has accepted, with why.

Format: one or more entries ``<rule-id>[, <rule-id>...]: <reason>``, on
separate lines or separated by commas before the next rule ID, e.g.::

    kubeprem.io/accept: |
      KP081: FreeSWITCH needs NET_ADMIN and SYS_NICE for RTP
      KP082: SIP needs the node's address, KP070: SIP clients dial the node port

An entry without a reason, or naming an unknown rule, accepts nothing and is a
finding itself (KP090). Used by the engine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from kubeprem.apps.audit.model import Manifest

ANNOTATION = "kubeprem.io/accept"
_RULE_ID = r"[A-Z]{2}\d{3}"
_NEXT_ENTRY = re.compile(rf",\s*(?={_RULE_ID}\s*(?:,\s*{_RULE_ID}\s*)*:)")
_ENTRY = re.compile(rf"^\s*({_RULE_ID}(?:\s*,\s*{_RULE_ID})*)\s*(?::\s*(.*?))?\s*$", re.DOTALL)


@dataclass(frozen=True)
class Accepts:
    reasons: dict[str, str]
    problems: list[str]


def _entries(raw: str) -> list[str]:
    """Entries on separate lines (or after ';'), or after a comma that follows a
    reason and comes before the next ``<rule-id>:``."""
    out: list[str] = []
    for line in re.split(r"[\n;]", raw):
        start = 0
        for match in _NEXT_ENTRY.finditer(line):
            if ":" in line[start : match.start()]:
                out.append(line[start : match.start()])
                start = match.end()
        out.append(line[start:])
    return out


def parse_accepts(m: Manifest, known: set[str]) -> Accepts:
    """The accepted rule IDs with their reasons, and the problems of the annotation."""
    annotations = m.metadata.get("annotations")
    raw = annotations.get(ANNOTATION) if isinstance(annotations, Mapping) else None
    reasons: dict[str, str] = {}
    problems: list[str] = []
    if raw is None:
        return Accepts(reasons, problems)
    for entry in _entries(str(raw)):
        if not entry.strip():
            continue
        match = _ENTRY.match(entry)
        if match is None:
            problems.append(f"'{entry.strip()}' is not '<rule-id>: <reason>'")
            continue
        ids = [i.strip() for i in match[1].split(",")]
        reason = (match[2] or "").strip()
        for rule_id in ids:
            if rule_id not in known:
                problems.append(f"'{rule_id}' is not a rule of kubeprem audit")
            elif not reason:
                problems.append(f"{rule_id} is accepted without a reason")
            else:
                reasons[rule_id] = reason
    return Accepts(reasons, problems)

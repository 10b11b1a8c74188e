"""``kubeprem audit``: the stateful-readiness check for Kubernetes manifests.

It finds the mistakes that lose state or leak secrets (passwords in
ConfigMaps, hostPath volumes, replicas sharing a ReadWriteOnce claim,
StatefulSets without a headless Service, no probes or resources, ...).

    loader     files, folders, stdin -> Manifest (object + lines); the only I/O
    rules      the rule table (ID, severity, explanation, fix, check)
    engine     audit_objects(objects) -> list[Finding]
    formats    text, JSON, SARIF 2.1.0
"""

from kubeprem.apps.audit.engine import audit_objects, failing
from kubeprem.apps.audit.loader import ManifestError, load_paths, parse_manifests
from kubeprem.apps.audit.model import AuditOptions, Finding, Manifest, Rule, Severity
from kubeprem.apps.audit.rules import RULES, RULES_BY_ID

__all__ = [
    "RULES",
    "RULES_BY_ID",
    "AuditOptions",
    "Finding",
    "Manifest",
    "ManifestError",
    "Rule",
    "Severity",
    "audit_objects",
    "failing",
    "load_paths",
    "parse_manifests",
]

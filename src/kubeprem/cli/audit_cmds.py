"""`kubeprem audit PATH...`: check manifests for stateful-readiness mistakes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kubeprem.apps.audit import AuditOptions, Severity, audit_objects, failing, load_paths
from kubeprem.apps.audit.formats import to_json, to_sarif, to_text
from kubeprem.apps.audit.rules import RULES


def register(sub: Any) -> None:
    p = sub.add_parser(
        "audit",
        help="check Kubernetes manifests for mistakes that lose state or leak secrets",
        description="Check Kubernetes manifests (YAML or JSON files, folders searched "
        "recursively for *.yaml/*.yml/*.json, or - for stdin; multi-document files and "
        "List objects) for mistakes that lose state or leak secrets. Accept a finding "
        "for one object with the annotation 'kubeprem.io/accept: <rule-id>: <reason>'.",
        epilog="Exit status: 0 nothing at or above --fail-on, 1 something is, "
        f"2 unreadable input. Rules: {RULES[0].id}..{RULES[-1].id}, see docs/audit.md.",
    )
    p.add_argument("paths", metavar="PATH", nargs="+", help="file, folder, or - for stdin")
    p.add_argument(
        "--format",
        choices=("text", "json", "sarif"),
        default="text",
        help="output format (default: text)",
    )
    p.add_argument(
        "--fail-on",
        choices=[s.value for s in Severity],
        default="error",
        help="exit 1 when a finding at or above this severity is not accepted (default: error)",
    )
    p.add_argument(
        "--no-default-storage-class",
        action="store_true",
        help="the cluster has no default StorageClass: claims without one are errors",
    )
    p.set_defaults(handler=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    manifests = load_paths(args.paths, stdin=sys.stdin)
    options = AuditOptions(no_default_storage_class=args.no_default_storage_class)
    findings = audit_objects(manifests, options)
    if args.format == "json":
        sys.stdout.write(to_json(findings))
    elif args.format == "sarif":
        sys.stdout.write(to_sarif(findings))
    else:
        sys.stdout.write(to_text(findings, len(manifests)))
    return 1 if failing(findings, Severity(args.fail_on)) else 0

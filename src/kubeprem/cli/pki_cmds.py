"""`kubeprem pki SITE` and `kubeprem pki check SITE`.

One sub-command with a free argument list, so that both spellings work
without argparse treating SITE as an unknown action: one argument is the
site file to create or update the PKI for; ``check SITE`` reports expiry.
Nothing printed here contains key material: only names, subjects, SANs
and dates.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from kubeprem.cli.common import console
from kubeprem.errors import InputError
from kubeprem.pki.check import WARN_BEFORE, check_pki
from kubeprem.pki.store import ensure_pki
from kubeprem.site import load_site

USAGE = "kubeprem pki SITE | kubeprem pki check SITE"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "pki",
        usage=USAGE,
        help="create or reuse the cluster PKI; `pki check SITE` shows expiry",
        description=(
            "kubeprem pki SITE: create the cluster's CAs, certificates, kubeconfigs and "
            "encryption-at-rest key in .kubeprem/<cluster>/pki/ beside the site file, or "
            "reuse them: re-running changes nothing, a machine added to the site gets only "
            "its own certificates, and a certificate whose names no longer fit the site "
            "(e.g. a new VIP) is reissued. "
            f"kubeprem pki check SITE: list every certificate's subject, SANs and expiry, "
            f"highlighting those with less than {WARN_BEFORE.days} days left; exit status 1 "
            "when any has expired. No private key is ever printed."
        ),
    )
    p.add_argument("args", nargs="+", metavar="[check] SITE", help="the site file, after `check`")
    p.set_defaults(handler=cmd_pki)


def cmd_pki(args: argparse.Namespace) -> int:
    words: list[str] = list(args.args)
    if len(words) == 1:
        return _ensure(words[0])
    if len(words) == 2 and words[0] == "check":
        return _check(words[1])
    raise InputError(f"usage: {USAGE}")


def _ensure(site_path: str) -> int:
    loaded = load_site(site_path)
    report, _ = ensure_pki(loaded, datetime.now(UTC))
    table = Table(title=f"PKI of cluster '{escape(loaded.site.cluster.name)}'")
    table.add_column("created", justify="right")
    table.add_column("kept", justify="right")
    table.add_column("reissued", justify="right")
    table.add_row(
        str(report.count("created")),
        str(report.count("kept")),
        str(report.count("reissued")),
    )
    console.print(table)
    console.print(f"state folder: {escape(str(report.state_dir))}")
    for change in report.changes:
        if change.action == "reissued":
            console.print(f"reissued {escape(change.item)}: {escape(change.reason)}")
    for item in report.unused:
        console.print(f"unused {escape(item)}: no machine of the site needs it (left in place)")
    return 0


def _check(site_path: str) -> int:
    loaded = load_site(site_path)
    now = datetime.now(UTC)
    statuses = check_pki(loaded, now)
    table = Table(title=f"Certificates of cluster '{escape(loaded.site.cluster.name)}'")
    for column in ("name", "subject", "SANs", "not after", "days left"):
        table.add_column(column, justify="right" if column == "days left" else "left")
    for s in statuses:
        style = "bold red" if s.expired else "yellow" if s.expiring else None
        name = s.id if s.needed else f"{s.id} (unused)"
        table.add_row(
            escape(name),
            escape(s.subject),
            escape(", ".join(s.sans)),
            s.not_after.strftime("%Y-%m-%d %H:%M UTC"),
            "expired" if s.expired else str(s.days_left),
            style=style,
        )
    console.print(table)
    expired = [s.id for s in statuses if s.expired]
    soon = [s.id for s in statuses if s.expiring]
    if soon:
        console.print(f"{len(soon)} certificate(s) expire within {WARN_BEFORE.days} days")
    if expired:
        console.print(
            f"[bold red]{len(expired)} certificate(s) expired:[/] " + escape(", ".join(expired))
        )
        return 1
    return 0

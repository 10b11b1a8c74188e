"""`kubeprem plan`, `apply`, `status` and `kubeconfig`: the cluster itself."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from kubeprem.artifacts.cache import ArtifactSet, default_cache_dir, ensure_artifacts
from kubeprem.cli.common import add_site_arg, console, console_err, site_from
from kubeprem.errors import InputError, OperationError
from kubeprem.images.builder import ImageArchive, build_images, image_archives
from kubeprem.pki.store import ensure_pki
from kubeprem.plan.render import renderable
from kubeprem.site.load import LoadedSite, resolve_relative
from kubeprem.workflows import apply as wf
from kubeprem.workflows import status as st
from kubeprem.workflows.execute import ProgressEvent
from kubeprem.workflows.hosts import connected, round_trips


def register(sub: Any) -> None:
    p = sub.add_parser(
        "plan",
        help="show what apply would change, per machine",
        description="Connect to every machine (one round trip each), compare its files and "
        "services with the desired state, and print the changes apply would make, with a "
        "diff of each changed text file (read in one more round trip; never secrets). "
        "Changes nothing. A converged cluster shows no change.",
    )
    add_site_arg(p)
    p.add_argument("--json", action="store_true", help='print {"hosts": {"<machine>": [...]}}')
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also say why each thing is left as it is, and show the contents of files to be created",
    )
    p.set_defaults(handler=cmd_plan)

    p = sub.add_parser(
        "apply",
        help="converge the cluster: bootstrap it, or bring it back to the site file",
        description="Show the plan, ask, then apply it phase by phase with a health gate "
        "after each (etcd quorum, /readyz on every API server, /readyz through the VIP, "
        "every worker Ready). Safe to rerun: only what differs is changed, and only the "
        "services whose files changed restart.",
    )
    add_site_arg(p)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before applying")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=cmd_apply)

    p = sub.add_parser(
        "status",
        help="health of every machine and component",
        description="Per machine: etcd member health and leader, API /readyz, node Ready, "
        "versions, and days until the first certificate expires (warned from 30 days).",
    )
    add_site_arg(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser(
        "kubeconfig",
        help="print the path of the admin kubeconfig (server: the VIP)",
        description="Print the path of the admin kubeconfig, for `export KUBECONFIG=$(kubeprem kubeconfig site.yaml)`.",
    )
    add_site_arg(p)
    p.set_defaults(handler=cmd_kubeconfig)


def cluster_artifacts(loaded: LoadedSite) -> ArtifactSet:
    """The Kubernetes binaries the site asks for: from the cache, a mirror, or built."""
    site = loaded.site
    cache = (
        resolve_relative(loaded.path, site.artifacts.cache)
        if site.artifacts.cache
        else default_cache_dir()
    )
    mirror = site.artifacts.mirror
    if mirror and "://" not in mirror:
        mirror = str(resolve_relative(loaded.path, mirror))
    return ensure_artifacts(
        site, cache, lambda msg: console_err.print(f"artifacts: {escape(msg)}"), mirror=mirror
    )


def cluster_images(loaded: LoadedSite) -> list[ImageArchive]:
    """The archives of the images every cluster needs (pause, DNS, smoke), built when missing."""
    site = loaded.site
    names = list(wf.base_images(site))
    try:
        return image_archives(site, site_dir=loaded.path.parent, names=names)
    except InputError:
        build_images(
            names,
            site=site,
            progress=lambda m: console_err.print(f"images: {escape(m)}"),
        )
        return image_archives(site, site_dir=loaded.path.parent, names=names)


def _print_plan(cplan: wf.ClusterPlan, verbose: bool, *, to_stderr: bool = False) -> None:
    out = console_err if to_stderr else console
    out.print(renderable(cplan.hosts, verbose=verbose))
    for host, problems in cplan.problems.items():
        for p in problems:
            out.print(f"[red]preflight[/] {host}: {escape(p)}")


async def cmd_plan(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    _, bundle = ensure_pki(loaded, datetime.now(UTC))
    artifacts = cluster_artifacts(loaded)
    async with connected(loaded) as transports:
        # --json prints no diffs: no contents to read
        cplan = await wf.make_plan(loaded, bundle, artifacts, transports, previews=not args.json)
    if args.json:
        sys.stdout.write(json.dumps(cplan.to_dict(verbose=args.verbose), indent=2) + "\n")
    else:
        _print_plan(cplan, args.verbose)
    return 0


class HostProgress:
    """One line per host as it finishes each change; quiet otherwise."""

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "change-done":
            console_err.print(
                f"  {event.host}: [{event.done}/{event.total}] {escape(event.message)}"
            )
        elif event.kind == "host-failed":
            console_err.print(f"  [red]{event.host}: failed[/]: {escape(event.message)}")


async def cmd_apply(args: argparse.Namespace) -> int:
    if not args.yes and not sys.stdin.isatty():
        # refused before anything is created, locally or on a machine
        raise InputError("apply needs confirmation: run it in a terminal, or pass --yes")
    loaded = site_from(args)
    report_pki, bundle = ensure_pki(loaded, datetime.now(UTC))
    artifacts = cluster_artifacts(loaded)
    images = cluster_images(loaded)
    t0 = time.monotonic()
    async with connected(loaded) as transports:
        cplan = await wf.make_plan(loaded, bundle, artifacts, transports, previews=True)
        # with --json, stdout carries only the summary document
        _print_plan(cplan, verbose=False, to_stderr=args.json)
        wf.check_preflight(cplan)  # refused before asking: nothing to confirm
        if not args.yes:
            answer = console.input("Apply these changes? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                console.print("nothing changed")
                return 1
        report = await wf.apply(
            loaded,
            cplan,
            transports,
            images,
            say=lambda m: console_err.print(f"[bold]{escape(m)}[/]"),
            progress=HostProgress(),
        )
        trips = round_trips(transports)
    total = time.monotonic() - t0
    if args.json:
        doc = json.loads(wf.summary_json(report))
        doc["seconds"] = round(total, 2)
        doc["round_trips"] = trips
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    table = Table(title=f"apply of '{escape(loaded.site.cluster.name)}'")
    table.add_column("phase")
    table.add_column("changes", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("")
    for p in report.phases:
        table.add_row(p.name, str(p.changes), f"{p.seconds:.1f}", escape(p.detail))
    console.print(table)
    restarted = sorted(
        {s for summ in report.summaries for r in summ.hosts.values() for s in r.services_restarted}
    )
    reloaded = sorted(
        {s for summ in report.summaries for r in summ.hosts.values() for s in r.services_reloaded}
    )
    if report.changes == 0:
        console.print(f"[green]converged[/]: nothing changed, nothing restarted ({total:.1f} s)")
    else:
        also = f"; reloaded: {', '.join(reloaded)}" if reloaded else ""
        console.print(
            f"[green]done[/]: {report.changes} changes in {total:.1f} s; restarted: {', '.join(restarted) or 'nothing'}{also}"
        )
    console.print(
        f"use it: export KUBECONFIG={escape(str(st.admin_kubeconfig(loaded)))}; kubectl get nodes"
    )
    del report_pki
    return 0


async def cmd_status(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    async with connected(loaded) as transports:
        status = await st.gather_status(loaded, transports)
    if args.json:
        sys.stdout.write(json.dumps(status.to_dict(), indent=2) + "\n")
    else:
        console.print(st.table(status))
        if status.alerts:
            console.print(st.alerts_table(status.alerts))
        elif status.alerts is not None:
            console.print("no firing alerts")
        for w in status.warnings:
            console.print(f"[yellow]warning[/]: {escape(w)}")
    return 0 if status.healthy else 1


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    path = st.admin_kubeconfig(loaded)
    if not path.exists():
        raise OperationError(
            f"{path} does not exist yet; run `kubeprem pki {args.site}` or apply first"
        )
    sys.stdout.write(f"{path}\n")
    return 0

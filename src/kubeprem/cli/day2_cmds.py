"""Day-2 commands: `backup`, `restore`, `certs renew`, `encryption rotate`,
`verify [--chaos]`, `node add|remove`, `reset` and `upgrade plan|apply`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from kubeprem.cli.common import add_site_arg, console, console_err, site_from
from kubeprem.errors import InputError
from kubeprem.pki.store import ensure_pki
from kubeprem.site.load import LoadedSite
from kubeprem.workflows import apply as wf
from kubeprem.workflows import backup as bk
from kubeprem.workflows import certs as ce
from kubeprem.workflows import chaos as ch
from kubeprem.workflows import encryption_rotate as er
from kubeprem.workflows import nodes as nd
from kubeprem.workflows import reset as rt
from kubeprem.workflows import restore as rs
from kubeprem.workflows import upgrade as up
from kubeprem.workflows import verify as vf
from kubeprem.workflows.hosts import connected
from kubeprem.workflows.security_verify import security_results

_T0 = time.monotonic()


def _say(msg: str) -> None:
    console_err.print(f"[dim]{time.monotonic() - _T0:6.1f}s[/] [bold]{escape(msg)}[/]")


def _confirm(args: argparse.Namespace, question: str) -> bool:
    if getattr(args, "yes", False):
        return True
    if not sys.stdin.isatty():
        raise InputError(f"{args.command} needs confirmation: run it in a terminal, or pass --yes")
    answer = console.input(f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "backup",
        help="etcd snapshot + PKI to .kubeprem/<cluster>/backups/<time>/",
        description="Take an etcd snapshot on a healthy member, check it (etcdctl snapshot "
        "status), copy it here with the PKI and encryption config, and install the "
        "scheduled-snapshot timer on every etcd member.",
    )
    add_site_arg(p)
    p.add_argument(
        "--every-hours",
        type=int,
        default=bk.DEFAULT_EVERY_HOURS,
        help=f"hours between the timer's snapshots (default {bk.DEFAULT_EVERY_HOURS})",
    )
    p.add_argument(
        "--keep",
        type=int,
        default=bk.DEFAULT_KEEP,
        help=f"snapshots kept on members (default {bk.DEFAULT_KEEP})",
    )
    p.add_argument("--no-timer", action="store_true", help="do not install or update the timer")
    p.add_argument("--json", action="store_true", help="print the backup taken as JSON")
    p.set_defaults(handler=cmd_backup)

    p = sub.add_parser(
        "restore",
        help="restore every etcd member from a snapshot (objects after it are lost)",
        description="Stop the API servers and etcd everywhere, restore each member from "
        "SNAPSHOT (a file, a backup folder, or 'latest'), start etcd, wait for quorum, "
        "start the control plane. The old data directories are kept beside.",
    )
    add_site_arg(p)
    p.add_argument(
        "snapshot",
        metavar="SNAPSHOT",
        help="a snapshot file, a backup folder or its name, or 'latest' (the newest backup)",
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before restoring")
    p.set_defaults(handler=cmd_restore)

    p = sub.add_parser("certs", help="certificate renewal")
    csub = p.add_subparsers(dest="certs_command", metavar="COMMAND", required=True)
    q = csub.add_parser(
        "renew",
        help="reissue leaves close to expiry and roll them out one machine at a time",
    )
    add_site_arg(q)
    q.add_argument("--all", action="store_true", help="renew every leaf certificate")
    q.add_argument(
        "--days",
        type=int,
        default=ce.DEFAULT_DAYS,
        help=f"renew below this many days (default {ce.DEFAULT_DAYS})",
    )
    q.set_defaults(handler=cmd_certs_renew)

    p = sub.add_parser("encryption", help="encryption at rest")
    esub = p.add_subparsers(dest="encryption_command", metavar="COMMAND", required=True)
    q = esub.add_parser("rotate", help="new AES key: add, promote, rewrite Secrets, drop old")
    add_site_arg(q)
    q.add_argument("--yes", "-y", action="store_true", help="do not ask before rotating")
    q.set_defaults(handler=cmd_encryption_rotate)

    p = sub.add_parser(
        "verify",
        help="health checks; --chaos: break the cluster on purpose and measure",
        description="Without --chaos: every machine healthy, every etcd member listed, a "
        "write and read through the VIP. With --chaos: the cluster's scenarios "
        f"({', '.join(ch.CLUSTER_SCENARIOS)}) with a probe through the VIP every 100 ms, "
        "then, on a lab, a power-off of the machine running each deployed app's primary "
        "(redis-primary-poweroff, postgresql-primary-poweroff) with a client writing "
        "through the primary Service.",
    )
    add_site_arg(p)
    p.add_argument(
        "--chaos",
        action="store_true",
        help="break the cluster on purpose and measure the outage of each scenario",
    )
    p.add_argument(
        "--security",
        action="store_true",
        help="check file modes, API server, kubelet and etcd flags, and the firewall on "
        "every machine (exit 1 when an item fails)",
    )
    p.add_argument(
        "--scenario",
        action="append",
        choices=list(ch.SCENARIOS),
        help="run only these (repeatable)",
    )
    p.add_argument("--yes", "-y", action="store_true", help="no confirmation on a real site")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("node", help="add or remove one machine of a running cluster")
    nsub = p.add_subparsers(dest="node_command", metavar="COMMAND", required=True)
    q = nsub.add_parser("add", help="bring NAME (already in the site file) into the cluster")
    add_site_arg(q)
    q.add_argument("name", metavar="NAME", help="machine name from the site file")
    q.add_argument("--yes", "-y", action="store_true", help="do not ask before adding")
    q.set_defaults(handler=cmd_node_add)
    q = nsub.add_parser(
        "remove", help="drain/unregister NAME (etcd member remove for members), then reset it"
    )
    add_site_arg(q)
    q.add_argument("name", metavar="NAME", help="machine name from the site file")
    q.add_argument("--yes", "-y", action="store_true", help="do not ask before removing")
    q.set_defaults(handler=cmd_node_remove)

    p = sub.add_parser(
        "reset",
        help="remove everything kubeprem installed (all machines, or NAME)",
        description="Stop and disable kubeprem's services, remove its files, binaries and "
        "data (etcd data included). One etcd member of a running cluster: use `node remove`.",
    )
    add_site_arg(p)
    p.add_argument(
        "name", metavar="NAME", nargs="?", help="only this machine (default: every machine)"
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before resetting")
    p.set_defaults(handler=cmd_reset)

    p = sub.add_parser(
        "upgrade",
        help="move the cluster to the release the site file names, one machine at a time",
    )
    usub = p.add_subparsers(dest="upgrade_command", metavar="COMMAND", required=True)
    q = usub.add_parser(
        "apply",
        help="upgrade the running cluster to the site's kubernetes_version",
        description="Edit kubernetes_version in the site file, then run this. It reads the "
        "release each machine runs, refuses (exit 2, nothing changed) what the version-skew "
        "policy forbids (a skipped minor, a downgrade, a kubelet too old), shows the steps and "
        "asks; then takes a backup and upgrades etcd member by member if its version changes, "
        "each controller alone (etcd quorum, /readyz there and through the VIP before the "
        "next), then each worker alone: cordoned, drained with PodDisruptionBudgets respected, "
        "upgraded, Ready, uncordoned. A failed step stops with its error; running the command "
        "again resumes from the first machine not yet upgraded.",
    )
    add_site_arg(q)
    q.add_argument("--yes", "-y", action="store_true", help="do not ask before upgrading")
    q.add_argument("--json", action="store_true", help="print the summary as JSON")
    q.add_argument(
        "--no-backup", action="store_true", help="skip the etcd snapshot and PKI backup first"
    )
    q.add_argument(
        "--drain-timeout",
        type=int,
        default=600,
        metavar="SECONDS",
        help="how long a worker's drain may wait for PodDisruptionBudgets (default 600)",
    )
    q.set_defaults(handler=cmd_upgrade_apply)
    q = usub.add_parser(
        "plan",
        help="the order of an upgrade to the site's version; refuses skew-policy violations",
    )
    add_site_arg(q)
    q.add_argument("--from", dest="current", required=True, help="the running version")
    q.add_argument("--json", action="store_true", help="print the plan as JSON")
    q.set_defaults(handler=cmd_upgrade_plan)


async def cmd_backup(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    async with connected(loaded) as transports:
        taken = await bk.take_backup(loaded, transports, datetime.now(UTC), say=_say)
        if not args.no_timer:
            await bk.install_timer(
                loaded.site, transports, every_hours=args.every_hours, keep=args.keep
            )
    if args.json:
        sys.stdout.write(json.dumps(taken.to_dict(), indent=2) + "\n")
    else:
        console.print(
            f"[green]backup[/] {escape(str(taken.folder))}: revision {taken.status.revision}, "
            f"{taken.status.total_keys} keys, from {taken.member}"
        )
    return 0


async def cmd_restore(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    snapshot = bk.resolve_snapshot(loaded, args.snapshot)
    if not _confirm(
        args, f"Restore '{loaded.site.cluster.name}' from {snapshot}? Later changes are lost."
    ):
        console.print("nothing changed")
        return 1
    async with connected(loaded) as transports:
        report = await rs.restore(loaded, transports, snapshot, datetime.now(UTC), say=_say)
    console.print(
        f"[green]restored[/] {', '.join(report.members)} in {report.seconds:.1f} s; "
        f"old data kept as {report.kept_as}"
    )
    return 0


async def cmd_certs_renew(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    async with connected(loaded) as transports:
        report = await ce.renew(
            loaded,
            transports,
            datetime.now(UTC),
            days=args.days,
            everything=args.all,
            say=_say,
        )
    if report.renewed:
        console.print(
            f"[green]renewed[/] {len(report.renewed)} certificates; rolled "
            f"{', '.join(report.roll.order) or 'no machine'}"
        )
    return 0


async def cmd_encryption_rotate(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    if not _confirm(args, "Rotate the encryption key of Secrets (API servers restart one by one)?"):
        console.print("nothing changed")
        return 1
    async with connected(loaded) as transports:
        report = await er.rotate(loaded, transports, datetime.now(UTC), say=_say)
    console.print(
        f"[green]rotated[/]: {report.secrets_rewritten} Secrets now under {report.new_key}; "
        f"removed {', '.join(report.removed)}"
    )
    return 0


async def cmd_verify(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    if args.security:
        return await _verify_security(loaded, as_json=args.json)
    if not args.chaos:
        async with connected(loaded) as transports:
            report = await vf.health(loaded, transports)
        if args.json:
            sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
        else:
            for c in report.checks:
                mark = "[green]ok[/]" if c.ok else "[red]FAIL[/]"
                console.print(f"{mark} {escape(c.name)}: {escape(c.detail)}")
            for w in report.warnings:
                console.print(f"[yellow]warning[/]: {escape(w)}")
        return 0 if report.healthy else 1
    if not ch.is_lab(loaded) and not _confirm(
        args, f"'{loaded.site.cluster.name}' is not a lab: break it on purpose?"
    ):
        console.print("nothing changed")
        return 1
    names = args.scenario or []  # none: the cluster's, then one per deployed app
    run = await vf.run_chaos(loaded, names, say=_say)
    if args.json:
        sys.stdout.write(json.dumps(run.to_list(), indent=2) + "\n")
    else:
        table = Table(title=f"chaos on '{escape(loaded.site.cluster.name)}'")
        for col in ("scenario", "passed", "outage s", "goal s", "failed s", "probes", "timeline"):
            table.add_column(col)
        for r in run.results:
            table.add_row(
                r.name,
                "[green]yes[/]" if r.passed else "[red]no[/]",
                f"{r.outage_seconds:.2f}",
                f"{r.goal_seconds:.0f}",
                f"{r.failed_seconds:.2f}",
                str(r.probes),
                escape(r.timeline or r.error),
            )
        console.print(table)
    return 0 if run.passed else 1


async def _verify_security(loaded: LoadedSite, *, as_json: bool) -> int:
    async with connected(loaded) as transports:
        results = await security_results(loaded, transports)
    if as_json:
        sys.stdout.write(json.dumps([r.to_dict() for r in results], indent=2) + "\n")
    else:
        table = Table(title=f"security of '{escape(loaded.site.cluster.name)}'")
        for col in ("machine", "check", "status", "CIS", "detail"):
            table.add_column(col)
        style = {"pass": "green", "fail": "red", "unknown": "red", "exception": "yellow"}
        for r in results:
            color = style.get(r.status, "white")
            table.add_row(
                r.machine,
                escape(r.check.id),
                f"[{color}]{r.status}[/]",
                escape(r.check.cis or ""),
                escape(r.detail),
            )
        console.print(table)
    return 1 if any(r.failed for r in results) else 0


def cmd_upgrade_plan(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    plan = up.upgrade_plan(loaded.site, args.current)
    if args.json:
        sys.stdout.write(json.dumps(plan.to_dict(), indent=2) + "\n")
    else:
        for i, step in enumerate(plan.steps, 1):
            console.print(f"{i:2}. {escape(step.describe())}")
    return 0


async def cmd_upgrade_apply(args: argparse.Namespace) -> int:
    from kubeprem.cli.cluster_cmds import HostProgress, cluster_artifacts, cluster_images

    if not args.yes and not sys.stdin.isatty():
        raise InputError("upgrade apply needs confirmation: run it in a terminal, or pass --yes")
    if args.drain_timeout < 30:
        raise InputError(f"--drain-timeout {args.drain_timeout}: give at least 30 seconds")
    loaded = site_from(args)
    site = loaded.site
    _, bundle = ensure_pki(loaded, datetime.now(UTC))
    artifacts = cluster_artifacts(loaded)
    images = cluster_images(loaded)
    async with connected(loaded) as transports:
        cplan = await wf.make_plan(loaded, bundle, artifacts, transports)
        current = up.check_upgrade(site, cplan.facts)
        wf.check_preflight(cplan, upgrading=True)
        steps = up.upgrade_steps(site, cplan)
        out = console_err if args.json else console
        target = site.cluster.kubernetes_version
        if not steps:
            out.print(f"every machine runs {target}; the upgrade has nothing left to do")
        else:
            out.print(f"upgrade of '{escape(site.cluster.name)}' from {current} to {target}:")
            if not args.no_backup:
                out.print(" 0. backup (etcd snapshot and PKI)")
            for i, step in enumerate(steps, 1):
                out.print(f"{i:2}. {escape(step.describe())}")
            if not _confirm(args, "Upgrade?"):
                console.print("nothing changed")
                return 1

        async def backup() -> str:
            taken = await bk.take_backup(loaded, transports, datetime.now(UTC), say=_say)
            return str(taken.folder)

        report = await up.run_upgrade(
            loaded,
            cplan,
            current,
            transports,
            images,
            say=_say,
            progress=HostProgress(),
            backup=None if args.no_backup else backup,
            drain_timeout=args.drain_timeout,
        )
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
        return 0
    table = Table(title=f"upgrade of '{escape(site.cluster.name)}' to {target}")
    table.add_column("step")
    table.add_column("machine")
    table.add_column("changes", justify="right")
    table.add_column("seconds", justify="right")
    for s in report.steps:
        table.add_row(s.kind, s.host, str(s.changes), f"{s.seconds:.1f}")
    if report.steps:
        console.print(table)
    console.print(
        f"[green]done[/]: the cluster runs {target} ({report.seconds:.1f} s"
        + (f"; backup in {escape(report.backup)}" if report.backup else "")
        + ")"
    )
    return 0


async def cmd_node_add(args: argparse.Namespace) -> int:
    from kubeprem.cli.cluster_cmds import cluster_artifacts, cluster_images

    loaded = site_from(args)
    loaded.site.machine(args.name)
    _, bundle = ensure_pki(loaded, datetime.now(UTC))
    artifacts = cluster_artifacts(loaded)
    images = cluster_images(loaded)
    async with connected(loaded) as transports:
        cplan = await wf.make_plan(loaded, bundle, artifacts, transports)
        changed = [h for h, hp in cplan.hosts.hosts.items() if hp.changes]
        nd.check_add(loaded.site, args.name, changed)
        wf.check_preflight(cplan)
        console.print(f"changes on: {', '.join(changed) or 'nothing'}")
        if not _confirm(args, f"Add {args.name}?"):
            console.print("nothing changed")
            return 1
        if await nd.join_etcd(loaded, transports, args.name, say=_say):
            cplan = await wf.make_plan(loaded, bundle, artifacts, transports)
        await wf.apply(loaded, cplan, transports, images, say=_say)
    console.print(f"[green]added[/] {args.name}")
    return 0


async def cmd_node_remove(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    loaded.site.machine(args.name)
    if not _confirm(args, f"Remove {args.name} from the cluster and reset it?"):
        console.print("nothing changed")
        return 1
    bundle = rt.bundle_for_paths(loaded, datetime.now(UTC))
    async with connected(loaded) as transports:
        await nd.remove_node(loaded.site, bundle, transports, args.name, say=_say)
    console.print(
        f"[green]removed[/] {args.name}; now take it out of {args.site} and run "
        f"`kubeprem apply {args.site}` (load balancers and --etcd-servers follow)"
    )
    return 0


async def cmd_reset(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    site = loaded.site
    if args.name:
        m = site.machine(args.name)
        if m.has("etcd") and len(site.etcd_members) > 1:
            raise InputError(
                f"{args.name} is one etcd member of several: use `kubeprem node remove "
                f"{args.site} {args.name}` (it leaves the etcd membership first)"
            )
        names = [args.name]
    else:
        names = [m.name for m in site.machines]
    if not _confirm(args, f"Remove everything kubeprem installed on {', '.join(names)}?"):
        console.print("nothing changed")
        return 1
    bundle = rt.bundle_for_paths(loaded, datetime.now(UTC))
    async with connected(loaded, names) as transports:
        plans = await rt.reset(site, bundle, transports, names, say=_say)
    console.print(f"[green]reset[/] {', '.join(p.machine for p in plans)}")
    return 0

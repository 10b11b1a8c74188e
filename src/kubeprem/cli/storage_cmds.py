"""`kubeprem storage SITE` and `kubeprem storage status SITE`: local volumes."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from kubeprem.apps.storage import (
    StoragePlan,
    make_directories,
    storage_objects,
    summary,
    volume_report,
)
from kubeprem.cli.app_cmds import kube_api
from kubeprem.cli.common import console, site_from
from kubeprem.kube.rollout import apply_all
from kubeprem.transport.ssh import SSHTarget, SSHTransport


def register(sub: Any) -> None:
    p = sub.add_parser(
        "storage",
        help="local persistent volumes on every worker, and the default StorageClass 'local'",
        description="Create one directory per volume on each worker (over SSH), a node-affine "
        "PersistentVolume for each (reclaim policy Retain), and the StorageClass 'local' "
        "(WaitForFirstConsumer, the default). `storage status SITE` lists the volumes.",
    )
    p.add_argument("site", metavar="SITE", help="the site file, or `status`")
    p.add_argument("rest", nargs="?", metavar="SITE", help=argparse.SUPPRESS)
    p.add_argument("--size", default="10Gi", help="size of each volume (default 10Gi)")
    p.add_argument("--count", type=int, default=4, help="volumes per worker (default 4)")
    p.add_argument(
        "--path",
        default=StoragePlan.root,
        help=f"folder on the workers (default {StoragePlan.root})",
    )
    p.add_argument("--kubeconfig", metavar="FILE", help="default: the site's admin kubeconfig")
    p.set_defaults(handler=cmd_storage)


async def _directories(args: argparse.Namespace, plan: StoragePlan) -> None:
    loaded = site_from(args)

    site = loaded.site
    known = loaded.state_dir / "ssh" / "known_hosts"

    async def one(name: str) -> None:
        m = site.machine(name)
        transport = SSHTransport(
            SSHTarget(
                name=m.name,
                address=str(m.address),
                port=m.ssh.port or site.ssh.port,
                user=m.ssh.user or site.ssh.user,
                key=loaded.ssh_key(m.name),
                known_hosts=known if known.exists() else None,
            )
        )
        try:
            await make_directories(transport, plan)
        finally:
            await transport.close()

    await asyncio.gather(*(one(m.name) for m in loaded.site.workers))


def cmd_storage(args: argparse.Namespace) -> int:
    if args.site == "status" and args.rest:
        args.site = args.rest
        return cmd_status(args)
    plan = StoragePlan(size=args.size, count=args.count, root=args.path)
    loaded = site_from(args)
    objects = storage_objects(loaded.site, plan)
    api = kube_api(loaded, args.kubeconfig)
    apply_all(api, objects, dry_run=True)
    asyncio.run(_directories(args, plan))
    apply_all(api, objects, progress=lambda line: console.print(line))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    api = kube_api(loaded, args.kubeconfig)
    rows = volume_report(api.list("PersistentVolume"))
    for r in rows:
        console.print(f"{r.name:<24} {r.node:<14} {r.size:>6} {r.phase:<10} {r.claim}")
    counts = summary(rows)
    console.print(
        f"{counts['bound']} bound, {counts['released']} released (data kept, Retain), "
        f"{counts['free']} free"
    )
    return 0


__all__ = ["cmd_status", "cmd_storage", "register"]

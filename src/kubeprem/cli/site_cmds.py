"""`kubeprem init` and `kubeprem validate`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kubeprem.cli.common import add_site_arg, console, site_from
from kubeprem.site import example_text


def register(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="print a commented example site file (the thesis topology)",
        description="Print a commented example site file: 3 controllers (control plane, "
        "etcd, load balancer) and 3 workers behind the virtual IP 10.240.0.100. "
        "Redirect it to a file: kubeprem init > site.yaml",
    )
    p.set_defaults(handler=cmd_init)
    p = sub.add_parser(
        "validate",
        help="check a site file",
        description="Check a site file and print a summary. Problems are printed as "
        "file:line:column: message; exit status 2 when there are any.",
    )
    add_site_arg(p)
    p.set_defaults(handler=cmd_validate)


def cmd_init(args: argparse.Namespace) -> int:
    sys.stdout.write(example_text())
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    site = loaded.site
    console.print(
        f"{args.site}: ok: cluster '{site.cluster.name}', Kubernetes {site.cluster.version}, "
        f"{len(site.machines)} machines ({len(site.controllers)} control-plane, "
        f"{len(site.etcd_members)} etcd, {len(site.workers)} workers, "
        f"{len(site.load_balancers)} lb), API at {site.api_server_url}"
    )
    return 0

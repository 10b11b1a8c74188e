"""`kubeprem lab up|down|ssh|status|poweroff|start`: local machines for
trying and testing (systemd-nspawn), see ``kubeprem.lab.machines``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.table import Table

from kubeprem.cli.common import add_site_arg, console, console_err, site_from
from kubeprem.lab import machines
from kubeprem.lab.machines import MachineStatus


def register(sub: Any) -> None:
    lab = sub.add_parser(
        "lab",
        help="local machines for trying kubeprem (systemd-nspawn, needs root)",
        description="One systemd-nspawn machine per machine of a site, booting systemd "
        "and sshd, on a private bridge with the site's addresses; the site's SSH key is "
        "authorised for root. Nothing is forwarded from the lab to other networks.",
    )
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="COMMAND", required=True)

    p = lab_sub.add_parser(
        "up",
        help="create and boot every machine, wait for SSH",
        description="Create and boot every machine of the site, wait until each accepts "
        "SSH with the site's key, print a table. Running machines are kept; leftovers of "
        "a killed earlier lab are recovered. The first run builds the root filesystem "
        "with debootstrap (about a minute and a half).",
    )
    add_site_arg(p)
    p.set_defaults(handler=cmd_up)

    p = lab_sub.add_parser(
        "down",
        help="stop and remove every machine, the bridge and the firewall rules",
    )
    add_site_arg(p)
    p.set_defaults(handler=cmd_down)

    p = lab_sub.add_parser(
        "ssh",
        help="a shell on a machine, or run a command there",
        description="Open a root shell on a lab machine, or run COMMAND there and exit "
        "with its status: kubeprem lab ssh site.yaml controller-0 -- systemctl status",
    )
    add_site_arg(p)
    p.add_argument("name", metavar="NAME", help="machine name from the site file")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command to run (after --)")
    p.set_defaults(handler=cmd_ssh)

    p = lab_sub.add_parser("status", help="machines and their state")
    p.add_argument("site", metavar="SITE", nargs="?", help="a site file (default: every lab)")
    p.set_defaults(handler=cmd_status)

    p = lab_sub.add_parser(
        "poweroff",
        help="cut a machine's power (SIGKILL of its init); its disk is kept",
    )
    add_site_arg(p)
    p.add_argument("name", metavar="NAME", help="machine name from the site file")
    p.set_defaults(handler=cmd_poweroff)

    p = lab_sub.add_parser("start", help="boot one stopped machine, wait for SSH")
    add_site_arg(p)
    p.add_argument("name", metavar="NAME", help="machine name from the site file")
    p.set_defaults(handler=cmd_start)


def _table(rows: list[MachineStatus], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("name", "address", "state", "ssh"):
        table.add_column(col)
    for r in rows:
        ssh = "" if r.ssh is None else ("ok" if r.ssh else "no")
        table.add_row(r.name, r.address, r.state, ssh)
    return table


def _progress(msg: str) -> None:
    console_err.print(f"[dim]{msg}[/]")


def cmd_up(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    start = time.monotonic()
    rows = machines.lab_up(loaded, progress=_progress)
    console.print(_table(rows))
    console_err.print(f"lab up in {time.monotonic() - start:.1f} s")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    machines.lab_down(loaded, progress=_progress)
    console.print(f"lab of cluster '{loaded.site.cluster.name}' removed")
    return 0


def cmd_ssh(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    return machines.ssh(loaded, args.name, command)


def cmd_status(args: argparse.Namespace) -> int:
    if args.site:
        loaded = site_from(args)
        console.print(_table(machines.lab_status(loaded)))
        return 0
    labs = machines.all_labs()
    if not labs:
        console.print("no lab on this host")
    for lab in labs:
        console.print(_table(lab.machines, title=f"{lab.cluster} ({lab.site}, {lab.bridge})"))
    return 0


def cmd_poweroff(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    if machines.poweroff(loaded, args.name):
        console.print(f"{args.name}: powered off")
    else:
        console.print(f"{args.name}: was not running")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    rows = machines.lab_up(loaded, only=[args.name], progress=_progress)
    console.print(_table([r for r in rows if r.name == args.name]))
    return 0

"""Helpers shared by the command modules: consoles and the site argument."""

from __future__ import annotations

import argparse

from rich.console import Console

from kubeprem.site import LoadedSite, load_site

console = Console(highlight=False, soft_wrap=True)
console_err = Console(stderr=True, highlight=False, soft_wrap=True)


def add_site_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("site", metavar="SITE", help="the site file (see `kubeprem init`)")


def site_from(args: argparse.Namespace) -> LoadedSite:
    return load_site(args.site)

"""Commands of the images group: `kubeprem images build|list`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kubeprem.cli.common import console, console_err
from kubeprem.errors import InputError
from kubeprem.images import build_images, default_cache, list_images
from kubeprem.images.catalogue import DEFAULT_REGISTRY, NAMES
from kubeprem.site import load_site
from kubeprem.site.model import Site


def register(sub: Any) -> None:
    group = sub.add_parser(
        "images",
        help="image archives for air-gapped nodes",
        description="Build the images kubeprem uses from Debian packages into archives "
        "that apply imports on every node with `ctr -n k8s.io images import`, and list them.",
    )
    cmds = group.add_subparsers(dest="images_command", metavar="COMMAND")

    p = cmds.add_parser(
        "build",
        help="build (or reuse) the image archives",
        description="Build every catalogue image, or those named with --only. The first "
        "build of a Debian-based image runs debootstrap (about 70 s); unchanged images "
        "are reused from the cache. Needs root for the Debian-based images (chroot).",
    )
    _common(p)
    p.add_argument("--only", nargs="+", metavar="NAME", choices=NAMES, help="build only these")
    p.add_argument(
        "--kubernetes-src",
        type=Path,
        metavar="DIR",
        help="unpacked Kubernetes source with build/pause/linux/pause.c "
        "(default: ~/.cache/kubeprem/src/kubernetes-*)",
    )
    p.add_argument(
        "--refresh-base",
        action="store_true",
        help="rebuild the Debian base (new package versions rebuild the images using them)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show the output of every command")
    p.set_defaults(handler=cmd_build)

    p = cmds.add_parser(
        "list",
        help="list the catalogue's images and their archives",
        description="Name, reference, archive, digests (config = image id / manifest, as "
        "`ctr images ls` shows it) and size of every catalogue image.",
    )
    _common(p)
    p.add_argument("--json", action="store_true", help="print JSON with full digests")
    p.set_defaults(handler=cmd_list)
    group.set_defaults(handler=lambda args: _usage(group))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--site", metavar="SITE", help="site file: names pause after its Kubernetes version"
    )
    p.add_argument(
        "--registry",
        default=DEFAULT_REGISTRY,
        metavar="PREFIX",
        help=f"registry part of every reference but pause (default {DEFAULT_REGISTRY})",
    )
    p.add_argument(
        "--ref",
        action="append",
        default=[],
        metavar="NAME=REF",
        help="name one image differently, e.g. redis=mirror.example.org/redis:7.0.15",
    )
    p.add_argument(
        "--cache", type=Path, metavar="DIR", help=f"archive cache (default {default_cache()})"
    )


def _refs(args: argparse.Namespace) -> dict[str, str]:
    out = {}
    for item in args.ref:
        name, sep, ref = item.partition("=")
        if not sep or not name or not ref:
            raise InputError(f"--ref {item}: expected NAME=REFERENCE")
        out[name] = ref
    return out


def _site(args: argparse.Namespace) -> Site | None:
    return load_site(args.site).site if args.site else None


def cmd_build(args: argparse.Namespace) -> int:
    site, refs = _site(args), _refs(args)
    with console_err.status("images") as status:

        def progress(msg: str) -> None:
            console_err.print(f"[bold]==>[/] {msg}", markup=True, highlight=False)
            status.update(msg)

        def detail(line: str) -> None:
            if args.verbose:
                console_err.print(line, markup=False, highlight=False)
            elif line.strip():
                status.update(line.strip()[:100])

        built = build_images(
            args.only,
            site=site,
            registry=args.registry,
            refs=refs,
            cache=args.cache,
            kubernetes_src=args.kubernetes_src,
            refresh_base=args.refresh_base,
            progress=progress,
            detail=detail,
        )
    for a in built:
        console.print(f"{a.ref}  {a.path}  {a.digest}  {a.size / 1e6:.1f} MB", markup=False)
    return 0


def _short(digest: str | None) -> str:
    return digest.removeprefix("sha256:")[:12] if digest else "-"


def cmd_list(args: argparse.Namespace) -> int:
    statuses = list_images(_site(args), registry=args.registry, refs=_refs(args), cache=args.cache)
    if args.json:
        doc = [
            {
                "name": s.spec.name,
                "ref": s.ref,
                "contains": s.spec.contains,
                "archive": str(s.archive.path) if s.archive else None,
                "config_digest": s.archive.config_digest if s.archive else None,
                "manifest_digest": s.archive.digest if s.archive else None,
                "size": s.archive.size if s.archive else None,
                "stale": s.stale,
            }
            for s in statuses
        ]
        console.print_json(json.dumps(doc))
        return 0
    rows = [("NAME", "REFERENCE", "ARCHIVE", "CONFIG / MANIFEST", "SIZE")]
    for s in statuses:
        if s.archive is None:
            note = "(built for another reference)" if s.stale else "(not built)"
            rows.append((s.spec.name, s.ref, note, "-", "-"))
        else:
            rows.append(
                (
                    s.spec.name,
                    s.ref,
                    str(s.archive.path),
                    f"{_short(s.archive.config_digest)} / {_short(s.archive.digest)}",
                    f"{s.archive.size / 1e6:.1f} MB",
                )
            )
    # plain columns, never folded, so references and paths can be copied
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        console.print("  ".join([*cells, row[-1]]), markup=False, overflow="ignore", crop=False)
    return 0

"""`kubeprem artifacts SITE`: the site's binaries, checked, in the local cache."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape

from kubeprem.artifacts.cache import (
    ArtifactSet,
    default_cache_dir,
    ensure_artifacts,
    listing,
    mirror_components,
)
from kubeprem.artifacts.mirror import is_url, layout
from kubeprem.cli.common import add_site_arg, console_err, site_from
from kubeprem.site import LoadedSite
from kubeprem.site.load import resolve_relative


def register(sub: Any) -> None:
    p = sub.add_parser(
        "artifacts",
        help="binaries for the site's Kubernetes version, checked, in the local cache",
        description="Put the binaries the site's nodes run (Kubernetes, etcd, containerd, "
        "runc, CNI plugins) into the local cache with a SHA-256 manifest, from the site's "
        "artifacts.source: go-modules (the default: built from the Go modules kubeprem pins, "
        "go.sum checked, about 15 minutes on 2 cores the first time), a mirror of the "
        "upstream release files (checked against their published checksums), or "
        "debian-source (the legacy 1.20 path: Kubernetes built from Debian's source "
        "package). A complete cached set is reused.",
    )
    add_site_arg(p)
    p.add_argument(
        "--list",
        action="store_true",
        help="print every artifact the site needs and, for a mirror, every file to "
        "mirror with its upstream address; fetch nothing",
    )
    p.add_argument("--cache", metavar="DIR", help="cache folder (default: artifacts.cache)")
    p.add_argument("--verify", action="store_true", help="re-hash a reused cached set")
    p.set_defaults(handler=cmd_artifacts)


def cache_dir_of(loaded: LoadedSite, override: str | None = None) -> Path:
    """The cache folder: the option, else the site's (relative to the site
    file), else the user's cache folder."""
    if override:
        return Path(override).expanduser().resolve()
    value = loaded.site.artifacts.cache
    return resolve_relative(loaded.path, value).resolve() if value else default_cache_dir()


def mirror_of(loaded: LoadedSite) -> str | None:
    """The site's mirror, a directory resolved against the site file's folder."""
    value = loaded.site.artifacts.mirror
    if value is None or is_url(value):
        return value
    return str(resolve_relative(loaded.path, value).resolve())


def cmd_artifacts(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    if args.list:
        return _list(loaded)
    start = time.monotonic()

    def progress(msg: str) -> None:
        console_err.print(f"[dim]{time.monotonic() - start:6.1f}s[/] {escape(msg)}")

    result = ensure_artifacts(
        loaded.site,
        cache_dir_of(loaded, args.cache),
        progress,
        mirror=mirror_of(loaded),
        verify=args.verify,
    )
    sys.stdout.write(_table(result) + "\n")
    sys.stdout.write(f"manifest: {result.root / 'manifest.json'}\n")
    return 0


def _columns(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    """Plain aligned columns: readable in CI logs and easy to copy from."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return "\n".join(lines)


def _table(result: ArtifactSet) -> str:
    how = "reused from the cache" if result.reused else "new in the cache"
    rows = [
        (a.name, a.version, a.sha256[:12], f"{a.size / 1e6:.1f} MB", a.source)
        for a in result.files.values()
    ]
    head = f"Kubernetes {result.kubernetes_version} artifacts, {how} ({result.source}):"
    return head + "\n" + _columns(("name", "version", "sha256", "size", "source"), rows)


def _list(loaded: LoadedSite) -> int:
    site = loaded.site
    rows = [(r.spec.name, r.spec.version, str(r.spec.destination), r.origin) for r in listing(site)]
    out = f"artifacts for Kubernetes {site.cluster.version} ({site.artifacts.source}):\n"
    out += _columns(("name", "version", "node path", "from"), rows)
    if site.artifacts.source == "mirror":
        base = mirror_of(loaded) or "MIRROR"
        out += f"\n\nfiles the mirror {base} must hold (path <- upstream address):\n"
        for f in layout(mirror_components(site.cluster.version)):
            for rel in (f.path, f.checksum_path):
                out += f"  {rel} <- {f.upstream(rel)}\n"
    sys.stdout.write(out.rstrip("\n") + "\n")
    return 0

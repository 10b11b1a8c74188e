"""`kubeprem render SITE --out DIR`: every machine's files, as a folder tree.

The folder mirrors each machine's filesystem (DIR/controller-0/etc/...),
with the modes the files get on the machine, plus DIR/cluster/ for objects
applied through the API. The tree is built in a temporary folder beside
DIR and swapped in whole, so an interrupted render never leaves a mix of
old and new files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from kubeprem.cli.common import add_site_arg, console, site_from
from kubeprem.components import rbac
from kubeprem.components.base import RenderOptions
from kubeprem.components.render import all_files, render_machine
from kubeprem.errors import InputError, OperationError
from kubeprem.pki.store import ensure_pki


def register(sub: Any) -> None:
    p = sub.add_parser(
        "render",
        help="write every machine's files into a folder, to read or diff",
        description="Render every file kubeprem would install, one folder per machine "
        "mirroring its filesystem (DIR/worker-1/etc/systemd/system/kubelet.service, "
        "DIR/controller-0/etc/kubernetes/pki/apiserver.crt, ...), plus DIR/cluster/ for "
        "cluster objects. Creates the PKI first if the site has none. The folder holds "
        "private keys: it is created mode 0700.",
    )
    add_site_arg(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder to (re)create")
    p.add_argument(
        "--in-container",
        action="store_true",
        help="render for machines that are containers (the lab's systemd-nspawn machines)",
    )
    p.set_defaults(handler=cmd_render)


def cmd_render(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()) and not (out / ".kubeprem-render").exists():
        raise InputError(
            f"{out}: folder exists and was not made by `kubeprem render`; "
            "choose an empty or new folder"
        )
    _, bundle = ensure_pki(loaded, datetime.now(UTC))
    options = RenderOptions(in_container=args.in_container)
    site = loaded.site
    tree: dict[str, list[tuple[str, bytes, int]]] = {}
    for machine in site.machines:
        files = all_files(render_machine(site, machine, bundle, options))
        tree[machine.name] = [(f.path, f.content, f.mode) for f in files]
    tree["cluster"] = [("/rbac.yaml", rbac.manifests_text(site).encode(), 0o644)]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for host, entries in tree.items():
            for path, content, mode in entries:
                target = tmp / host / path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(content)
                os.chmod(target, mode)
        (tmp / ".kubeprem-render").write_text(f"rendered from {loaded.path}\n")
        os.chmod(tmp, 0o700)
        _swap(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OperationError(f"{out}: cannot write: {exc}") from exc

    table = Table(title=f"rendered into {escape(str(out))}")
    table.add_column("machine")
    table.add_column("roles")
    table.add_column("files", justify="right")
    for machine in site.machines:
        table.add_row(machine.name, ", ".join(machine.roles), str(len(tree[machine.name])))
    table.add_row("cluster", "(API objects)", str(len(tree["cluster"])))
    console.print(table)
    return 0


def _swap(new: Path, out: Path) -> None:
    """Put ``new`` at ``out``; an old render is removed only after the swap."""
    if not out.exists():
        new.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(old)
    new.rename(out)
    shutil.rmtree(old)

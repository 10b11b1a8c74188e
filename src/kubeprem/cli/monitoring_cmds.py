"""`kubeprem monitoring render SITE --out DIR [--values FILE]`.

Writes prometheus.yml, the ``*.rules.yml`` files, alertmanager.yml and
manifests.yaml (see ``kubeprem.apps.monitoring.render``). The folder is built
beside DIR and swapped in whole. Deploying needs the Kubernetes client and
is not offered yet: apply manifests.yaml with kubectl after creating the two
Secrets docs/monitoring.md lists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kubeprem.apps.monitoring import load_values, render
from kubeprem.cli.common import add_site_arg, console, site_from
from kubeprem.errors import InputError, OperationError

MARKER = ".kubeprem-monitoring"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "monitoring",
        help="Prometheus, Alertmanager and node exporter for the cluster",
        description="Monitoring and alerting for the cluster. `deploy` comes with the "
        "Kubernetes client; until then apply the rendered manifests.yaml yourself.",
    )
    msub = p.add_subparsers(dest="monitoring_command", metavar="COMMAND", required=True)
    r = msub.add_parser(
        "render",
        help="write the Prometheus and Alertmanager configuration, rules and manifests",
        description="Render prometheus.yml, the alert rules (*.rules.yml), alertmanager.yml "
        "and manifests.yaml into a folder. No secret is written: the etcd client "
        "certificate and the SMTP password are Secrets the deploy step creates.",
    )
    add_site_arg(r)
    r.add_argument("--out", required=True, metavar="DIR", help="folder to (re)create")
    r.add_argument(
        "--values",
        metavar="FILE",
        help="monitoring values (receivers, storage, exposed components); defaults when absent",
    )
    r.set_defaults(handler=cmd_render)


def cmd_render(args: argparse.Namespace) -> int:
    site = site_from(args).site
    values = load_values(args.values)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise InputError(
            f"{out}: folder exists and was not made by `kubeprem monitoring render`; "
            "choose an empty or new folder"
        )
    files = render(site, values)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for rel, text in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        (tmp / MARKER).write_text("made by kubeprem monitoring render\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OperationError(f"{out}: cannot write the rendered files: {exc}") from exc
    console.print(f"wrote {len(files)} files to {out}")
    return 0

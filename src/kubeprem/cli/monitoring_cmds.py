"""`kubeprem monitoring render SITE --out DIR [--values FILE]` and
`kubeprem monitoring deploy SITE [--values FILE]`.

``render`` writes prometheus.yml, the ``*.rules.yml`` files, alertmanager.yml
and manifests.yaml (see ``kubeprem.apps.monitoring.render``); the folder is
built beside DIR and swapped in whole. ``deploy`` creates the Secrets, imports
the images into the workers and applies the manifests
(``kubeprem.workflows.monitoring``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.markup import escape

from kubeprem.apps.monitoring import Values, load_values, render
from kubeprem.cli.app_cmds import kube_api
from kubeprem.cli.common import add_site_arg, console, site_from
from kubeprem.errors import InputError, OperationError
from kubeprem.images.builder import image_archives
from kubeprem.pki.store import ensure_pki
from kubeprem.sensitive import Sensitive
from kubeprem.workflows.monitoring import IMAGES, deploy, deploy_objects, import_workers

MARKER = ".kubeprem-monitoring"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "monitoring",
        help="Prometheus, Alertmanager and node exporter for the cluster",
        description="Monitoring and alerting for the cluster: `render` writes the "
        "configuration and manifests, `deploy` puts them in the cluster.",
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
        help="monitoring values (receivers, storage, application exporters); defaults when absent",
    )
    r.set_defaults(handler=cmd_render)
    d = msub.add_parser(
        "deploy",
        help="create the Secrets, import the images into the workers, apply the manifests",
        description="Create the Secret with Prometheus's etcd client certificate (PKI entry "
        "etcd/prometheus-client) and, when the values name email.password_file, the SMTP "
        "password Secret; import the prometheus, alertmanager and node-exporter images "
        "into every worker; server-side apply the manifests and wait for the StatefulSets. "
        "Needs the storage class 'local' (`kubeprem storage SITE`).",
    )
    add_site_arg(d)
    d.add_argument(
        "--values",
        metavar="FILE",
        help="monitoring values (receivers, storage, application exporters); defaults when absent",
    )
    d.add_argument("--kubeconfig", metavar="FILE", help="default: the site's admin kubeconfig")
    d.add_argument("--no-wait", action="store_true", help="do not wait for the rollout")
    d.add_argument(
        "--timeout", type=float, default=600.0, metavar="SECONDS", help="rollout wait (600)"
    )
    d.set_defaults(handler=cmd_deploy)


def _smtp_password(values: Values, values_path: str | None) -> Sensitive[bytes] | None:
    if values.email is None or values.email.password_file is None:
        return None
    path = Path(values.email.password_file)
    if not path.is_absolute() and values_path is not None:
        path = Path(values_path).parent / path
    try:
        data = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the SMTP password file: {exc.strerror}") from exc
    if not data:
        raise InputError(f"{path}: the SMTP password file is empty")
    return Sensitive(data)


def cmd_deploy(args: argparse.Namespace) -> int:
    loaded = site_from(args)
    values = load_values(args.values)
    smtp = _smtp_password(values, args.values)
    _, bundle = ensure_pki(loaded, datetime.now(UTC))
    manifests, secrets = deploy_objects(loaded, values, bundle, smtp)
    images = image_archives(loaded.site, site_dir=loaded.path.parent, names=list(IMAGES))
    api = kube_api(loaded, args.kubeconfig)

    def say(line: str) -> None:
        console.print(escape(line))

    try:
        deploy(
            api,
            manifests,
            secrets,
            lambda: asyncio.run(import_workers(loaded, images, say)),
            say=say,
            wait=not args.no_wait,
            timeout=args.timeout,
        )
    finally:
        api.close()
    console.print(f"monitoring deployed in namespace {values.namespace}")
    return 0


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

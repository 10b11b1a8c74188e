"""`kubeprem app render|deploy|status|destroy APP`: stateful apps as code."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubeprem.apps import workflow
from kubeprem.apps.base import Rendered, SystemPasswords
from kubeprem.apps.catalog import APPS, app_def
from kubeprem.apps.values import load_values
from kubeprem.cli.common import add_site_arg, console, console_err, site_from
from kubeprem.errors import InputError
from kubeprem.images import image_archives, image_refs
from kubeprem.kube.api import KubeAPI
from kubeprem.kube.http import HttpKubeAPI
from kubeprem.kube.resources import Minor, ident, rank_of
from kubeprem.pki.store import KUBECONFIG_DIR, pki_dir
from kubeprem.site import LoadedSite
from kubeprem.workflows.apply import import_images
from kubeprem.workflows.hosts import connected


def register(sub: Any) -> None:
    p = sub.add_parser("app", help="render, deploy, inspect or destroy a stateful app")
    app_sub = p.add_subparsers(dest="app_command", metavar="ACTION", required=True)
    apps_help = f"the app: {', '.join(APPS)}"

    r = app_sub.add_parser("render", help="write the app's manifests (no cluster needed)")
    r.add_argument("app", metavar="APP", help=apps_help)
    r.add_argument("--values", metavar="FILE", help="values file (YAML) overriding the defaults")
    r.add_argument("--out", metavar="DIR", help="one file per object here (default: stdout)")
    r.add_argument(
        "--kubernetes-version",
        metavar="X.Y",
        default=RENDER_VERSION,
        help="the cluster's release, for the API versions of the objects "
        f"(default {RENDER_VERSION}, as `kubeprem init` writes)",
    )
    r.set_defaults(handler=cmd_render)

    for name, fn, text in (
        ("deploy", cmd_deploy, "check, dry-run, apply in order and wait for the rollout"),
        ("status", cmd_status, "rollout state, pods with their roles, claims"),
        ("destroy", cmd_destroy, "delete the app; claims, passwords and namespace stay"),
    ):
        c = app_sub.add_parser(name, help=text)
        add_site_arg(c)
        c.add_argument("app", metavar="APP", help=apps_help)
        c.add_argument("--values", metavar="FILE", help="values file used to deploy")
        c.add_argument("--kubeconfig", metavar="FILE", help="default: the site's admin kubeconfig")
        if name == "deploy":
            c.add_argument("--no-wait", action="store_true", help="do not wait for the rollout")
            c.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
            c.add_argument(
                "--dry-run",
                action="store_true",
                help="only check: the same preflight checks, then a server-side dry run "
                "(dryRun=All) of every object, and what would be created or changed; imports "
                "no image and applies nothing. The app's namespaces that do not exist yet are "
                "created for the check (the server dry-runs objects only in an existing "
                "namespace) and always deleted again afterwards",
            )
        if name == "destroy":
            c.add_argument(
                "--delete-data",
                action="store_true",
                help="also delete the claims (the data), the passwords and the namespace",
            )
        c.set_defaults(handler=fn)


RENDER_VERSION = "1.37"


def parse_release(text: str) -> Minor:
    """``1.37`` or ``1.37.2`` -> (1, 37); InputError otherwise."""
    parts = text.removeprefix("v").split(".")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        raise InputError(f"--kubernetes-version: {text!r} is not a version like 1.37 or 1.37.2")
    return int(parts[0]), int(parts[1])


def kube_api(loaded: LoadedSite, kubeconfig: str | None) -> HttpKubeAPI:
    path = Path(kubeconfig) if kubeconfig else pki_dir(loaded) / KUBECONFIG_DIR / "admin.conf"
    if not path.exists():
        raise InputError(f"no kubeconfig at {path}; run `kubeprem pki {loaded.path}` first")
    return HttpKubeAPI.from_kubeconfig(path)


def cmd_render(args: argparse.Namespace) -> int:
    app = app_def(args.app)
    values = load_values(app.values, args.values)
    release = parse_release(args.kubernetes_version)
    rendered = workflow.render(app, values, image_refs(), SystemPasswords(), release=release)
    if not args.out:
        console.out(workflow.to_yaml(rendered.objects), end="")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, obj in enumerate(sorted(rendered.objects, key=rank_of)):
        name = f"{i:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        mode = 0o600 if obj["kind"] == "Secret" else 0o644
        fd = os.open(out / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(workflow.to_yaml([obj]))
        os.chmod(out / name, mode)
    console_err.print(f"wrote {len(rendered.objects)} manifests to {out}")
    return 0


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, HttpKubeAPI, LoadedSite]:
    app = app_def(args.app)
    values = load_values(app.values, args.values)
    loaded = site_from(args)
    if "cluster_domain" in type(values).model_fields and (
        "cluster_domain" not in values.model_fields_set
    ):
        # the site knows its DNS domain; a values file may still say otherwise
        values = values.model_copy(update={"cluster_domain": loaded.site.cluster.domain})
    return app, values, kube_api(loaded, args.kubeconfig), loaded


def import_app_images(loaded: LoadedSite, refs: Sequence[str]) -> None:
    """Import the archives of ``refs`` into every worker's containerd, where
    missing. The app's own manifests say which images it needs, so the
    operator keeps no second list (apply imports only the cluster's base
    images); archives come from `kubeprem images build` or the site file."""
    by_ref = {ref: name for name, ref in image_refs(loaded.site).items()}
    # raises, naming the `images build` command, when a catalogue archive is missing
    archives = [
        a
        for a in image_archives(
            loaded.site,
            site_dir=loaded.path.parent,
            names=[by_ref[r] for r in refs if r in by_ref],
        )
        if a.ref in refs
    ]
    missing = sorted(set(refs) - {a.ref for a in archives})
    if missing:
        raise InputError(
            f"no image archive for {', '.join(missing)}: name one under images: in the "
            "site file (or use the catalogue's references)"
        )

    async def run() -> str:
        async with connected(loaded, [m.name for m in loaded.site.workers]) as transports:
            _, detail = await import_images(
                loaded.site, transports, archives, lambda line: console.print(line)
            )
            return detail

    console.print(f"images on the workers: {asyncio.run(run())}")


def cmd_deploy(args: argparse.Namespace) -> int:
    app, values, api, loaded = _prepare(args)
    rendered = workflow.render(
        app, values, image_refs(loaded.site), SystemPasswords(), api, loaded.site.cluster.minor
    )
    refs = workflow.image_refs_of(rendered.objects)
    if args.dry_run:
        return _dry_run(app.name, api, rendered, loaded, refs)
    workflow.deploy(
        api,
        rendered,
        loaded.site,
        wait=not args.no_wait,
        timeout=args.timeout,
        progress=lambda line: console.print(line),
        before_apply=lambda: import_app_images(loaded, refs),
    )
    console.print(f"[green]{app.name} deployed[/] in namespace {rendered.namespace}")
    return 0


def _dry_run(
    name: str, api: KubeAPI, rendered: Rendered, loaded: LoadedSite, refs: Sequence[str]
) -> int:
    result = workflow.dry_run(api, rendered, loaded.site, progress=lambda line: console.print(line))
    changed = [obj for action, obj in result.planned if action == "change"]
    console.print(
        f"[green]{name}: dry run passed[/]: the API server accepted all "
        f"{len(result.planned)} objects: {result.count('create')} would be created, "
        f"{result.count('change')} would change, {result.count('unchanged')} unchanged"
    )
    if changed:
        console.print("would change: " + ", ".join(changed))
    console.print(
        f"nothing applied, no image imported (a deploy needs {len(refs)} image(s) in every "
        "worker's containerd, imported from their archives: " + (", ".join(refs) or "none") + ")"
    )
    if result.namespaces:
        console.print(
            f"namespace(s) {', '.join(result.namespaces)} did not exist: created for the "
            "dry run and deleted again"
        )
    if result.left:
        console_err.print(
            f"[red]namespace(s) {', '.join(result.left)} created for the dry run are still "
            "there[/] (terminating, or their deletion failed): check with "
            f"`kubectl get namespace {' '.join(result.left)}`"
        )
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    app, values, api, loaded = _prepare(args)
    rendered = workflow.render(
        app, values, image_refs(loaded.site), SystemPasswords(), api, loaded.site.cluster.minor
    )
    rows, pods, claims = workflow.status(api, rendered)
    for w in rows:
        mark = "ok " if w.done else "..."
        console.print(f"{mark} {w.kind} {w.name}: {w.detail}")
    for p in pods:
        console.print(
            f"    pod {p.name:<24} {p.phase:<10} {'ready' if p.ready else 'not ready':<10} "
            f"{p.role:<10} {p.node}"
        )
    for name, phase, volume in claims:
        console.print(f"    claim {name:<30} {phase:<8} {volume}")
    for line in app.status_notes(values) if app.status_notes else ():
        console.print(line)
    return 0 if all(w.done for w in rows) else 1


def cmd_destroy(args: argparse.Namespace) -> int:
    app, values, api, loaded = _prepare(args)
    rendered = workflow.render(
        app, values, image_refs(), SystemPasswords(), api, loaded.site.cluster.minor
    )
    gone = workflow.destroy(
        api, rendered, delete_data=args.delete_data, progress=lambda line: console.print(line)
    )
    kept = "" if args.delete_data else "; claims, the Secret and the namespace were kept"
    console.print(f"{app.name}: {len(gone)} objects deleted{kept}")
    return 0


__all__ = ["cmd_deploy", "cmd_destroy", "cmd_render", "cmd_status", "ident", "register"]

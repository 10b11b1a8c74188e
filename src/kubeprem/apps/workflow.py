"""Render, deploy, inspect and destroy an app: the steps behind ``kubeprem app``.

Called by ``kubeprem.cli.app_cmds``; talks to the cluster only through a
``KubeAPI`` (the real one or ``FakeKubeAPI`` in tests). Deploy checks
everything it can before changing anything: the storage classes the claims
name exist (or a default does), there are enough workers for required
anti-affinity, and the API server accepts every object in a server dry run.
Only then are the objects applied, in the order of ``kubeprem.kube.resources``,
and waited for with kubectl's rollout semantics. ``dry_run`` does the checks
and the server dry run only, and says what a deploy would create or change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from kubeprem.apps.base import PasswordSource, Rendered, secret_values
from kubeprem.apps.catalog import AppDef
from kubeprem.apps.storage import default_classes
from kubeprem.apps.values import Values
from kubeprem.errors import InputError
from kubeprem.kube.api import KubeAPI, KubeError
from kubeprem.kube.resources import Minor, apply_order, for_release, ident
from kubeprem.kube.rollout import apply_all, delete_all, rollout_state, wait_rolled_out
from kubeprem.site.model import Site

Progress = Callable[[str], None]


def render(
    app: AppDef,
    values: Values,
    images: dict[str, str],
    gen: PasswordSource,
    api: KubeAPI | None = None,
    release: Minor | None = None,
) -> Rendered:
    """The app's manifests. With ``api``, passwords already in the cluster are
    kept; with ``release``, each object has the API version that release serves."""
    existing = {}
    if api is not None:
        existing = secret_values(api.get("Secret", app.secret, values.namespace))
    rendered = app.build(values, images, app.passwords(existing, gen))
    if release is None:
        return rendered
    return replace(rendered, objects=tuple(for_release(rendered.objects, release)))


def preflight(api: KubeAPI, rendered: Rendered, site: Site | None) -> None:
    """Raise InputError when the cluster cannot run ``rendered``; changes nothing."""
    workers = len(site.workers) if site is not None else None
    if rendered.required_spread and workers is not None and workers < rendered.required_spread:
        raise InputError(
            f"{rendered.app}: anti_affinity 'required' puts each of "
            f"{rendered.required_spread} pods on its own machine, but the site has "
            f"{workers} worker(s); add workers or set anti_affinity: preferred"
        )
    classes = api.list("StorageClass")
    names = {str(c["metadata"]["name"]) for c in classes}
    for wanted in rendered.storage_classes:
        if wanted is None and not default_classes(classes):
            raise InputError(
                f"{rendered.app}: its claims use the cluster's default StorageClass, and the "
                "cluster has none; run `kubeprem storage SITE` (class 'local', made default) "
                "or name a class in the values file (storage.class)"
            )
        if wanted is not None and wanted not in names:
            have = ", ".join(sorted(names)) or "none"
            raise InputError(
                f"{rendered.app}: no StorageClass {wanted!r} in the cluster (it has: {have}); "
                "run `kubeprem storage SITE` or set storage.class in the values file"
            )


def image_refs_of(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every image the objects' pods run (containers and init containers), in
    first-seen order: what the workers' containerd must hold before deploy."""
    out: dict[str, None] = {}
    for obj in objects:
        spec = obj.get("spec") or {}
        pod = spec if obj.get("kind") == "Pod" else (spec.get("template") or {}).get("spec") or {}
        for key in ("initContainers", "containers"):
            for c in pod.get(key) or []:
                if c.get("image"):
                    out[str(c["image"])] = None
    return list(out)


def deploy(
    api: KubeAPI,
    rendered: Rendered,
    site: Site | None,
    *,
    wait: bool = True,
    timeout: float = 600.0,
    progress: Progress = lambda _: None,
    sleep: Callable[[float], None] | None = None,
    before_apply: Callable[[], None] | None = None,
) -> None:
    """Check, dry-run, apply in order, wait. Bad input leaves the cluster as it was.
    ``before_apply`` runs once the dry run passed (the CLI imports the app's
    images into the workers' containerd there), so bad input changes no node."""
    preflight(api, rendered, site)
    created_ns = _create_missing_namespaces(api, rendered)
    try:
        apply_all(api, rendered.objects, dry_run=True, progress=progress)
    except KubeError as exc:
        for name in created_ns:
            api.delete("Namespace", name)
        if _bad_input(exc):
            raise InputError(
                f"the API server refused the manifests, nothing applied: {exc}"
            ) from exc
        raise
    if before_apply is not None:
        before_apply()
    apply_all(api, rendered.objects, progress=progress)
    if wait:
        kwargs: dict[str, Any] = {"timeout": timeout, "progress": progress}
        if sleep is not None:
            kwargs["sleep"] = sleep
        wait_rolled_out(api, rendered.objects, **kwargs)


def _create_missing_namespaces(api: KubeAPI, rendered: Rendered) -> list[str]:
    """Namespaced objects can be dry-run only in a namespace that exists:
    create the app's missing namespaces; the names of those created."""
    created = []
    for ns in rendered.objects:
        if ns["kind"] == "Namespace" and api.get("Namespace", ns["metadata"]["name"]) is None:
            api.apply(ns)
            created.append(str(ns["metadata"]["name"]))
    return created


def _bad_input(exc: KubeError) -> bool:
    """A 4xx answer to a dry run: the manifests are wrong (exit 2), not the cluster."""
    return exc.status is not None and 400 <= exc.status < 500


Action = Literal["create", "change", "unchanged"]
# set by the API server on every write: not part of what a deploy changes
_VOLATILE = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid")
_SAY = {"create": "would be created", "change": "would change", "unchanged": "unchanged"}


@dataclass(frozen=True)
class DryRun:
    """What ``deploy`` would do: (action, object) in apply order; the
    namespaces created for the check and deleted again, and those of them
    still there at the end (terminating, or their deletion failed)."""

    planned: tuple[tuple[Action, str], ...]
    namespaces: tuple[str, ...]
    left: tuple[str, ...] = ()

    def count(self, action: Action) -> int:
        return sum(1 for a, _ in self.planned if a == action)


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _VOLATILE}
    return {k: v for k, v in obj.items() if k != "status"} | {"metadata": meta}


def dry_run(
    api: KubeAPI,
    rendered: Rendered,
    site: Site | None,
    *,
    progress: Progress = lambda _: None,
    namespace_timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> DryRun:
    """``deploy`` without the deploy: the same preflight checks, then a server
    dry run (dryRun=All) of every object, compared with what is stored to say
    what would be created or changed. Imports no image and applies nothing,
    except the app's missing namespaces: namespaced objects can be dry-run only
    in a namespace that exists, so those are created for the check and always
    deleted afterwards (on failure too); this waits up to ``namespace_timeout``
    seconds for them to be gone."""
    preflight(api, rendered, site)
    created = _create_missing_namespaces(api, rendered)
    planned: list[tuple[Action, str]] = []
    try:
        for obj in apply_order(rendered.objects):
            meta = obj["metadata"]
            kind, name = str(obj["kind"]), str(meta["name"])
            fresh = kind == "Namespace" and name in created
            live = None if fresh else api.get(kind, name, meta.get("namespace"))
            try:
                stored = api.apply(obj, dry_run=True)
            except KubeError as exc:
                if _bad_input(exc):
                    raise InputError(
                        f"the API server refused the manifests (dry run, nothing applied): {exc}"
                    ) from exc
                raise
            action: Action = "create"
            if live is not None:
                action = "unchanged" if _comparable(live) == _comparable(stored) else "change"
            planned.append((action, ident(obj)))
            progress(f"validated {ident(obj)}: {_SAY[action]}")
    finally:
        undeleted = []
        for name in reversed(created):
            try:
                api.delete("Namespace", name)
                progress(f"deleted namespace {name} (created for the dry run)")
            except KubeError as exc:
                undeleted.append(name)
                progress(f"could not delete namespace {name} (created for the dry run): {exc}")
    left = _wait_gone(api, [n for n in created if n not in undeleted], namespace_timeout, sleep)
    return DryRun(tuple(planned), tuple(created), (*undeleted, *left))


def _wait_gone(
    api: KubeAPI, namespaces: list[str], timeout: float, sleep: Callable[[float], None]
) -> list[str]:
    """Namespaces still there (terminating) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    left = list(namespaces)
    while left:
        left = [n for n in left if api.get("Namespace", n) is not None]
        if not left or time.monotonic() >= deadline:
            break
        sleep(1.0)
    return left


@dataclass(frozen=True)
class WorkloadRow:
    kind: str
    name: str
    done: bool
    detail: str


@dataclass(frozen=True)
class PodRow:
    name: str
    phase: str
    ready: bool
    role: str
    node: str


def status(
    api: KubeAPI, rendered: Rendered
) -> tuple[list[WorkloadRow], list[PodRow], list[tuple[str, str, str]]]:
    """Workloads (rolled out?), pods (ready, Patroni/label role, node) and claims."""
    rows = []
    for obj in rendered.objects:
        if obj["kind"] not in ("StatefulSet", "Deployment"):
            continue
        # an app may span namespaces (BigBlueButton: one per server)
        ns = obj["metadata"].get("namespace", rendered.namespace)
        live = api.get(obj["kind"], obj["metadata"]["name"], ns)
        if live is None:
            rows.append(WorkloadRow(obj["kind"], obj["metadata"]["name"], False, "not deployed"))
            continue
        done, why = rollout_state(live)
        rows.append(WorkloadRow(obj["kind"], obj["metadata"]["name"], done, why or "rolled out"))
    pods = []
    for pod in api.list("Pod", rendered.namespace, f"app.kubernetes.io/name={rendered.app}"):
        st = pod.get("status") or {}
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        lbls: Mapping[str, str] = pod["metadata"].get("labels") or {}
        pods.append(
            PodRow(
                pod["metadata"]["name"],
                str(st.get("phase", "?")),
                conds.get("Ready") == "True",
                lbls.get("role", lbls.get("app.kubernetes.io/component", "")),
                str((pod.get("spec") or {}).get("nodeName", "")),
            )
        )
    claims = [
        (
            c["metadata"]["name"],
            str((c.get("status") or {}).get("phase", "?")),
            str((c.get("spec") or {}).get("volumeName", "")),
        )
        for c in api.list("PersistentVolumeClaim", rendered.namespace)
    ]
    return rows, pods, claims


def destroy(
    api: KubeAPI, rendered: Rendered, *, delete_data: bool, progress: Progress = lambda _: None
) -> list[str]:
    """Delete the app in reverse order. Without ``delete_data`` the claims, the
    Secret (the data's passwords) and the Namespace (deleting it would delete
    the claims) stay, so a later deploy finds its data and can read it."""
    keep = set() if delete_data else {"Namespace", "Secret", "PersistentVolumeClaim"}
    objects = [o for o in rendered.objects if o["kind"] not in keep]
    gone = delete_all(api, objects, progress=progress)
    if delete_data:
        for kind, name in rendered.extra_cleanup:
            if api.delete(kind, name, rendered.namespace):
                gone.append(f"{kind} {rendered.namespace}/{name}")
        for claim in api.list(
            "PersistentVolumeClaim", rendered.namespace, f"app.kubernetes.io/name={rendered.app}"
        ):
            if api.delete("PersistentVolumeClaim", claim["metadata"]["name"], rendered.namespace):
                gone.append(ident(claim))
                progress("deleted " + ident(claim))
    return gone


__all__ = [
    "DryRun",
    "PodRow",
    "WorkloadRow",
    "deploy",
    "destroy",
    "dry_run",
    "image_refs_of",
    "preflight",
    "render",
    "status",
    "to_yaml",
]


def to_yaml(objects: Any) -> str:
    """Objects as one multi-document YAML text, in apply order."""
    from kubeprem.kube.resources import apply_order
    from kubeprem.yamltext import dump_yaml

    return dump_yaml(*(_plain(o) for o in apply_order(objects)))


def _plain(o: Any) -> Any:
    if isinstance(o, Mapping):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_plain(v) for v in o]
    return o

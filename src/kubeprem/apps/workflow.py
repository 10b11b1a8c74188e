"""Render, deploy, inspect and destroy an app: the steps behind ``kubeprem app``.

Called by ``kubeprem.cli.app_cmds``; talks to the cluster only through a
``KubeAPI`` (the real one or ``FakeKubeAPI`` in tests). Deploy checks
everything it can before changing anything: the storage classes the claims
name exist (or a default does), there are enough workers for required
anti-affinity, and the API server accepts every object in a server dry run.
Only then are the objects applied, in the order of ``kubeprem.kube.resources``,
and waited for with kubectl's rollout semantics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubeprem.apps.base import PasswordSource, Rendered, secret_values
from kubeprem.apps.catalog import AppDef
from kubeprem.apps.storage import default_classes
from kubeprem.apps.values import Values
from kubeprem.errors import InputError
from kubeprem.kube.api import KubeAPI, KubeError
from kubeprem.kube.resources import ident
from kubeprem.kube.rollout import apply_all, delete_all, rollout_state, wait_rolled_out
from kubeprem.site.model import Site

Progress = Callable[[str], None]


def render(
    app: AppDef,
    values: Values,
    images: dict[str, str],
    gen: PasswordSource,
    api: KubeAPI | None = None,
) -> Rendered:
    """The app's manifests. With ``api``, passwords already in the cluster are kept."""
    existing = {}
    if api is not None:
        existing = secret_values(api.get("Secret", app.secret, values.namespace))
    return app.build(values, images, app.passwords(existing, gen))


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
    ns_objs = [o for o in rendered.objects if o["kind"] == "Namespace"]
    created_ns = []
    for ns in ns_objs:
        # namespaced objects can be dry-run only in a namespace that exists
        if api.get("Namespace", ns["metadata"]["name"]) is None:
            api.apply(ns)
            created_ns.append(ns["metadata"]["name"])
    try:
        apply_all(api, rendered.objects, dry_run=True, progress=progress)
    except KubeError as exc:
        for name in created_ns:
            api.delete("Namespace", name)
        if exc.status is not None and 400 <= exc.status < 500:
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
    "PodRow",
    "WorkloadRow",
    "deploy",
    "destroy",
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

"""A machine's whole desired state: every component its roles call for.

Pure. Called by ``kubeprem render`` and by the plan. Which components run
where is one table (``BY_ROLE``); each component's ``render`` only knows its
own files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from kubeprem.components import (
    apiserver,
    cni,
    containerd,
    controller_manager,
    etcd,
    firewall,
    haproxy,
    keepalived,
    kube_proxy,
    kubelet,
    node_os,
    routes,
    scheduler,
)
from kubeprem.components.base import File, HostContext, Rendered, RenderOptions
from kubeprem.components.pki_files import pki_files
from kubeprem.pki.bundle import PkiBundle
from kubeprem.site.model import Machine, Role, Site

Renderer = Callable[[HostContext], Rendered]

# In start order: a later component may depend on an earlier one being up.
BY_ROLE: tuple[tuple[Role | None, Renderer], ...] = (
    (None, firewall.render),  # every machine: nftables table inet kubeprem, before services
    ("worker", node_os.render),
    (None, routes.render),  # every machine routes to the workers' pod CIDRs
    ("etcd", etcd.render),
    ("control-plane", apiserver.render),
    ("control-plane", controller_manager.render),
    ("control-plane", scheduler.render),
    ("lb", haproxy.render),
    ("lb", keepalived.render),
    ("worker", containerd.render),
    ("worker", cni.render),
    ("worker", kubelet.render),
    ("worker", kube_proxy.render),
)


def render_machine(
    site: Site,
    machine: Machine,
    bundle: PkiBundle,
    options: RenderOptions | None = None,
    *,
    extra: Sequence[Rendered] = (),
) -> list[Rendered]:
    """Every component for one machine; the PKI files come first, then
    ``extra`` (the binaries, during apply), then the services in start order."""
    ctx = HostContext(site, machine, options or RenderOptions())
    out = [pki_files(ctx, bundle), *extra]
    for role, render in BY_ROLE:
        if role is None or machine.has(role):
            rendered = render(ctx)
            if rendered.files or rendered.services:
                out.append(rendered)
    _check_unique_paths(machine, out)
    return with_reads(out)


def with_reads(rendered: list[Rendered]) -> list[Rendered]:
    """Each component with a service learns which other components' files it
    reads: any of their paths named in its own files (a unit's ExecStart, a
    kubeconfig path in a config). A renewed certificate or a new binary then
    restarts exactly the services that use it."""
    out = []
    for r in rendered:
        if not r.services:
            out.append(r)
            continue
        own = {f.path for f in r.files}
        texts = [f.content for f in r.files if not f.secret]
        reads = tuple(
            sorted(
                f.path
                for other in rendered
                if other is not r
                for f in other.files
                if f.path not in own and any(f.path.encode() in t for t in texts)
            )
        )
        out.append(replace(r, reads=tuple(dict.fromkeys(reads))))
    return out


def _check_unique_paths(machine: Machine, rendered: list[Rendered]) -> None:
    owner: dict[str, str] = {}
    for r in rendered:
        for f in r.files:
            if f.path in owner and owner[f.path] != r.component:
                raise AssertionError(
                    f"{machine.name}: {f.path} rendered by both {owner[f.path]} and {r.component}"
                )
            owner[f.path] = r.component


def all_files(rendered: list[Rendered]) -> list[File]:
    return [f for r in rendered for f in r.files]

"""Each machine's desired state: rendered components plus the binaries it runs.

Pure given its inputs (the artifact files are read once from the local
cache). Called by plan and apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path

from kubeprem.artifacts.cache import ArtifactSet
from kubeprem.components.base import File, Rendered, RenderOptions
from kubeprem.components.render import render_machine
from kubeprem.pki.bundle import PkiBundle
from kubeprem.site.model import Machine, Role, Site

# Which artifacts each role runs; a machine gets the union over its roles.
ARTIFACTS_BY_ROLE: Mapping[Role, tuple[str, ...]] = {
    "etcd": ("etcd", "etcdctl", "etcdutl"),  # etcdutl: etcd 3.6 and later
    "control-plane": ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"),
    "worker": (
        "kubelet",
        "kube-proxy",
        "containerd",
        "containerd-shim-runc-v2",
        "ctr",
        "runc",
        "bridge",
        "host-local",
        "loopback",
        "portmap",
    ),
    "lb": (),
}


@cache
def _read(path: Path) -> bytes:
    return path.read_bytes()


def artifact_files(machine: Machine, artifacts: ArtifactSet) -> Rendered:
    names: dict[str, None] = {}
    for role in machine.roles:
        for name in ARTIFACTS_BY_ROLE[role]:
            if name in artifacts.files:
                names[name] = None
    files = tuple(
        File(
            str(artifacts.files[n].destination),
            _read(artifacts.files[n].path),
            0o755,
            known_sha256=artifacts.files[n].sha256,
        )
        for n in names
    )
    return Rendered("artifacts", files)


def desired_state(
    site: Site,
    bundle: PkiBundle,
    artifacts: ArtifactSet | None,
    options: Mapping[str, RenderOptions] | None = None,
) -> dict[str, list[Rendered]]:
    """Machine name -> its components, in start order."""
    out = {}
    for m in site.machines:
        extra = [artifact_files(m, artifacts)] if artifacts is not None else []
        opts = (options or {}).get(m.name, RenderOptions())
        out[m.name] = render_machine(site, m, bundle, opts, extra=extra)
    return out

"""What a component renderer returns, and what it gets.

Renderers are pure: ``render(ctx) -> Rendered`` from the site model and one
machine, no I/O, no clock, no randomness. The plan layer compares their
files with a host's facts; the render command writes them to a folder.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from kubeprem.site.model import Machine, Site


@dataclass(frozen=True)
class File:
    """One file as it must be on a machine."""

    path: str  # absolute path on the machine, e.g. /etc/kubernetes/pki/ca.crt
    content: bytes
    mode: int = 0o644
    secret: bool = False  # a key, token or password: never printed, masked in plans
    known_sha256: str | None = None  # when already known (artifacts): not hashed again

    def sha256(self) -> str:
        """Hex SHA-256 of the content; big binaries carry theirs from the
        artifact manifest, so a plan does not hash hundreds of MB per host."""
        return self.known_sha256 or hashlib.sha256(self.content).hexdigest()

    @staticmethod
    def text(path: str, text: str, mode: int = 0o644, *, secret: bool = False) -> File:
        return File(path, text.encode(), mode, secret)


@dataclass(frozen=True)
class Rendered:
    """A component's desired state on one machine.

    ``services``: systemd units to enable and keep running, restarted when
    any of ``files`` changes, or any file of another component named in
    ``reads`` (a certificate, a binary) changes. Files without a service
    (CNI configuration) restart nothing.

    ``reloads``: those of ``services`` that take changed files with
    ``systemctl reload`` and no downtime (HAProxy's seamless reload), so
    they are reloaded instead; a change of their own unit file still
    restarts them.
    """

    component: str
    files: tuple[File, ...]
    services: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    reloads: tuple[str, ...] = ()


@dataclass(frozen=True)
class RenderOptions:
    """Facts about where the files go that change what is rendered.

    ``in_container``: the machine is itself a container (the lab's
    systemd-nspawn machines). Enables the few settings such machines need
    and real servers must not get: containerd's restrict_oom_score_adj and
    kube-proxy's conntrack sysctls left alone.

    ``etcd_existing``: the machine's etcd member was added to a running
    cluster (`kubeprem node add`, recorded in the state folder), so it starts
    with ``initial-cluster-state=existing``; the members that bootstrapped
    the cluster keep ``new``. Both are ignored once the data directory
    holds a member, so neither ever changes after the first start.

    ``cgroup_v1``: the machine mounts cgroup v1 controllers (v1 alone or the
    hybrid layout). The kubelet refuses them from 1.35 unless told
    ``failCgroupV1: false``; kubeprem renders that on such machines only.
    """

    in_container: bool = False
    etcd_existing: bool = False
    cgroup_v1: bool = False


@dataclass(frozen=True)
class HostContext:
    site: Site
    machine: Machine
    options: RenderOptions = field(default_factory=RenderOptions)

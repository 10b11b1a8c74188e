"""`kubeprem reset`: remove what kubeprem installed from machines.

Called by the reset command and by `node remove`. What goes, per machine, is
derived from the same desired state apply writes (every rendered file and
service, the binaries of the machine's roles) plus the data and state
folders the programs made. Steps on each machine, in this order:

1. stop and disable every kubeprem service (and the snapshot timer);
2. kill the pods' containers (``ctr tasks kill``) before containerd stops,
   and unmount what the kubelet and containerd mounted;
3. remove the rendered files, the binaries, the data and state folders
   (etcd data, old restore copies, kubelet, containerd, /etc/kubernetes,
   CNI config, local snapshots), kubeprem's nftables table;
4. ``systemctl daemon-reload``.

Routes and loaded kernel modules stay until the next boot. Resetting one
etcd member of a running cluster is refused here: that is `node remove`,
which takes it out of the etcd membership first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from kubeprem.components import paths
from kubeprem.pki.bundle import PkiBundle
from kubeprem.pki.keys import SystemKeySource
from kubeprem.pki.store import converge, pki_dir, read_store
from kubeprem.site.load import LoadedSite
from kubeprem.site.model import Machine, Site
from kubeprem.transport.base import Transport
from kubeprem.workflows.backup import TIMER_DIR, TIMER_SERVICE, TIMER_UNIT, timer_files
from kubeprem.workflows.desired import ARTIFACTS_BY_ROLE, desired_state

CNI_PLUGINS = frozenset({"bridge", "host-local", "loopback", "portmap"})
DATA_DIRS = (
    paths.ETCD_DATA,
    f"{paths.ETCD_DATA}.restore",
    paths.ETC_K8S,
    paths.KUBELET_DIR,
    "/var/lib/kube-proxy",
    "/var/lib/containerd",
    "/var/lib/kubeprem",
    "/var/log/kubernetes",
    paths.CNI_CONF_DIR,
    "/etc/containerd",
    "/usr/local/lib/kubeprem",
    TIMER_DIR,
)

# Stops pods' containers, unmounts, removes folders (a folder that is itself a
# mount point, such as a separate containerd disk, is emptied) and old etcd copies.
# $1: ctr path; the rest: folders to remove.
RESET_SCRIPT = r"""
ctr="$1"; shift
if [ -x "$ctr" ] && [ -S /run/containerd/containerd.sock ]; then
  for t in $("$ctr" -n k8s.io tasks ls -q 2>/dev/null); do
    "$ctr" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
  done
  sleep 1
fi
awk '{print $2}' /proc/mounts | grep -E '^(/var/lib/kubelet|/run/containerd|/var/lib/containerd|/run/netns)/' \
  | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
for d in "$@"; do
  if awk -v d="$d" '$2 == d {f=1} END {exit !f}' /proc/mounts; then
    find "$d" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +   # a mount point: empty it
  else
    rm -rf -- "$d"
  fi
done
rm -rf -- /var/lib/etcd.before-restore-*
"""

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class ResetPlan:
    machine: str
    services: tuple[str, ...]
    files: tuple[str, ...]
    folders: tuple[str, ...]


def bundle_for_paths(loaded: LoadedSite, now: datetime) -> PkiBundle:
    """A bundle to name the rendered files with; computed in memory, never
    written (a PKI folder older than the site must not stop a reset)."""
    return converge(loaded.site, read_store(pki_dir(loaded)), now, SystemKeySource())[2]


def binaries(m: Machine) -> list[str]:
    names = dict.fromkeys(n for role in m.roles for n in ARTIFACTS_BY_ROLE[role])
    return [f"{paths.CNI_BIN_DIR if n in CNI_PLUGINS else paths.BIN_DIR}/{n}" for n in names]


def reset_plans(site: Site, bundle: PkiBundle, names: Sequence[str]) -> list[ResetPlan]:
    """What reset removes from each of ``names`` (pure)."""
    desired = desired_state(site, bundle, None)
    out = []
    for name in names:
        m = site.machine(name)
        rendered = list(desired[name])
        if m.has("etcd"):
            rendered.append(timer_files())
        services: dict[str, None] = {}
        if m.has("etcd"):
            services[TIMER_UNIT] = None
            services[TIMER_SERVICE] = None
        # the node agents first, etcd last: nothing keeps writing while it stops
        for r in reversed(rendered):
            for s in r.services:
                services[s] = None
        files = dict.fromkeys(f.path for r in rendered for f in r.files)
        files.update(dict.fromkeys(binaries(m)))
        out.append(ResetPlan(name, tuple(services), tuple(files), DATA_DIRS))
    return out


async def reset_machine(t: Transport, plan: ResetPlan, say: Say = _quiet) -> None:
    say(f"{plan.machine}: stop {len(plan.services)} services")
    for unit in plan.services:
        await t.run(["systemctl", "disable", "--now", unit], step=f"stop {unit}", check=False)
    say(f"{plan.machine}: remove {len(plan.files)} files and the data folders")
    await t.run(
        ["sh", "-c", RESET_SCRIPT, "kubeprem-reset", f"{paths.BIN_DIR}/ctr", *plan.folders],
        step="stop containers, unmount, remove folders",
        timeout=300,
    )
    await t.run(["rm", "-f", "--", *plan.files], step="remove files")
    await t.run(
        ["nft", "delete", "table", "inet", "kubeprem"], step="remove firewall table", check=False
    )
    await t.run(["systemctl", "daemon-reload"], step="daemon-reload")


async def reset(
    site: Site,
    bundle: PkiBundle,
    transports: Mapping[str, Transport],
    names: Sequence[str],
    *,
    say: Say = _quiet,
) -> list[ResetPlan]:
    plans = reset_plans(site, bundle, names)
    await asyncio.gather(*(reset_machine(transports[p.machine], p, say) for p in plans))
    return plans

"""`kubeprem restore`: every etcd member from one snapshot, then the control plane.

Called by the restore command and the restore scenario of `verify --chaos`.
The order matters and is tested with fakes (tests/unit/test_day2_restore.py):

1. stop kube-apiserver, kube-controller-manager and kube-scheduler on every
   controller at once, without their graceful drain (nothing may write to
   etcd while its past is put back);
2. stop etcd on every member (all of them: a member left running would
   replicate the present back over the restored past);
3. on each member: copy the snapshot, ``etcdctl snapshot restore`` it with
   the member's own name, peer URL, the initial cluster and the cluster
   token into a fresh data directory (etcd 3.4's etcdctl; 3.6's etcdutl
   takes the same flags), then swap: the old data directory is kept as
   ``/var/lib/etcd.before-restore-<time>``;
4. start etcd on every member at once (a member waits for quorum before it
   reports ready) and wait for quorum;
5. start the control plane, wait for /readyz on each API server and through
   the VIP; restart kubelet and kube-proxy on the workers so their watches
   start from the restored revision.

Objects created after the snapshot are gone; those before it are back.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kubeprem.components import etcd, paths
from kubeprem.components.base import File
from kubeprem.errors import OperationError
from kubeprem.site.load import LoadedSite
from kubeprem.site.model import Machine, Site
from kubeprem.transport.base import Transport
from kubeprem.workflows import gates
from kubeprem.workflows.backup import stamp

CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE_AGENTS = ("kubelet", "kube-proxy")
REMOTE_SNAPSHOT = "/var/lib/kubeprem/restore/snapshot.db"
RESTORE_DIR = f"{paths.ETCD_DATA}.restore"

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class RestoreReport:
    snapshot: Path
    members: tuple[str, ...]
    kept_as: str  # where each member's previous data directory went
    seconds: float


async def stop_now(t: Transport, units: tuple[str, ...]) -> None:
    """Stop ``units`` without their graceful drain: a kube-apiserver waits up to
    60 s for its requests on SIGTERM, pointless when etcd is about to be
    replaced. The stop job is queued first, so Restart= does not bring the
    killed process back."""
    await t.run(["systemctl", "stop", "--no-block", *units], step="stop control plane")
    await t.run(
        ["systemctl", "kill", "--signal=SIGKILL", *units], step="kill control plane", check=False
    )
    await gates.until(
        t,
        ["systemctl", "is-active", *units],
        what="control plane stopped",
        timeout=90,
        interval=0.5,
        accept=lambda r: all(
            line.strip() != "active" and line.strip() != "deactivating"
            for line in r.stdout.splitlines()
        ),
    )


def restore_argv(site: Site, m: Machine) -> list[str]:
    """``etcdctl snapshot restore`` (``etcdutl`` from etcd 3.6) for one
    member, into RESTORE_DIR."""
    return [
        gates.snapshot_tool(site),
        "snapshot",
        "restore",
        REMOTE_SNAPSHOT,
        f"--name={m.name}",
        f"--initial-cluster={etcd.initial_cluster(site)}",
        f"--initial-cluster-token={site.cluster.name}",
        f"--initial-advertise-peer-urls={etcd.peer_url(m)}",
        f"--data-dir={RESTORE_DIR}",
    ]


async def restore(
    loaded: LoadedSite,
    transports: Mapping[str, Transport],
    snapshot: Path,
    now: datetime,
    *,
    say: Say = _quiet,
    clock: Callable[[], float] | None = None,
) -> RestoreReport:
    import time

    tick = clock or time.monotonic
    t0 = tick()
    site = loaded.site
    data = snapshot.read_bytes()
    if len(data) < 4096:
        raise OperationError(f"{snapshot}: too small to be an etcd snapshot")
    digest = hashlib.sha256(data).hexdigest()
    members = site.etcd_members
    controllers = site.controllers
    old = f"{paths.ETCD_DATA}.before-restore-{stamp(now)}"

    # Copy and check first: a failed copy must leave the cluster running.
    say("copy the snapshot to every member")

    async def copy(m: Machine) -> None:
        t = transports[m.name]
        await t.put(File(REMOTE_SNAPSHOT, data, 0o600), step="copy snapshot")
        r = await t.run(["sha256sum", REMOTE_SNAPSHOT], step="check copied snapshot")
        if not r.stdout.startswith(digest):
            raise OperationError(f"{m.name}: the copied snapshot's checksum differs; retry")
        await t.run(
            [gates.snapshot_tool(site), "snapshot", "status", REMOTE_SNAPSHOT, "-w", "json"],
            step="snapshot status",
        )

    await asyncio.gather(*(copy(m) for m in members))

    say("stop the control plane on every controller")
    await asyncio.gather(*(stop_now(transports[m.name], CONTROL_PLANE) for m in controllers))
    say("stop etcd on every member")
    await asyncio.gather(
        *(
            transports[m.name].run(["systemctl", "stop", "etcd"], step="stop etcd", timeout=120)
            for m in members
        )
    )

    say("restore the snapshot into a fresh data directory on each member")

    async def restore_member(m: Machine) -> None:
        t = transports[m.name]
        await t.run(["rm", "-rf", RESTORE_DIR], step="remove an earlier restore's leftovers")
        await t.run(restore_argv(site, m), step="snapshot restore", timeout=300)
        await t.run(["mv", paths.ETCD_DATA, old], step="keep the old data directory")
        await t.run(["mv", RESTORE_DIR, paths.ETCD_DATA], step="swap in the restored data")
        await t.run(["chmod", "0700", paths.ETCD_DATA], step="etcd data directory mode")
        await t.run(["rm", "-f", REMOTE_SNAPSHOT], step="remove the copied snapshot")

    await asyncio.gather(*(restore_member(m) for m in members))

    say("start etcd on every member, wait for quorum")
    for m in members:
        await transports[m.name].run(
            ["systemctl", "start", "--no-block", "etcd"], step="start etcd"
        )
    await gates.etcd_healthy(transports[members[0].name], timeout=180)

    say("start the control plane")
    await asyncio.gather(
        *(
            transports[m.name].run(
                ["systemctl", "start", "--no-block", *CONTROL_PLANE], step="start control plane"
            )
            for m in controllers
        )
    )
    await gates.all_of(*(gates.apiserver_ready(transports[m.name], site) for m in controllers))
    await gates.vip_ready(transports[controllers[0].name], timeout=120)

    say("restart kubelet and kube-proxy on the workers")
    for m in site.workers:
        await transports[m.name].run(
            ["systemctl", "restart", *NODE_AGENTS], step="restart node agents", timeout=120
        )
    return RestoreReport(snapshot, tuple(m.name for m in members), old, tick() - t0)

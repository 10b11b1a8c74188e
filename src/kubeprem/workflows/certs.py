"""`kubeprem certs renew`: reissue leaf certificates, then roll them out one
machine at a time while the API stays reachable through the VIP.

Called by the renew command; ``roll`` is also used by the encryption key
rotation. Steps:

1. ``due``: the leaves with fewer than ``days`` days left (default 90), or
   all of them with ``--all`` (CAs are never renewed here: a new CA would
   invalidate every kubeconfig handed out);
2. ``reissue``: drop those leaves from the stored PKI and let the PKI's
   converge issue them again (fresh keys, same names); kubeconfigs that
   embed them follow; the state folder is written atomically;
3. ``roll``: the plan (facts -> diff) shows which files and services change
   per machine; machines are handled one at a time, etcd members and
   controllers first, then workers; after each: etcd quorum (members),
   /readyz on its API server (controllers), /readyz through the VIP asked
   from another controller, its node Ready (workers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from kubeprem.errors import OperationError
from kubeprem.pki.bundle import PkiBundle
from kubeprem.pki.check import CertStatus, check_pki
from kubeprem.pki.keys import KeySource, SystemKeySource
from kubeprem.pki.store import ENCRYPTION_CONFIG, converge, pki_dir, read_store, write_atomic
from kubeprem.plan.model import HostPlan, Plan
from kubeprem.sensitive import Sensitive
from kubeprem.site.load import LoadedSite
from kubeprem.site.model import Site
from kubeprem.transport.base import Transport
from kubeprem.workflows import gates
from kubeprem.workflows.apply import make_plan
from kubeprem.workflows.execute import execute

DEFAULT_DAYS = 90
CA_IDS = ("ca", "etcd/ca", "front-proxy-ca")

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def due(statuses: Sequence[CertStatus], *, days: int, everything: bool) -> list[str]:
    """Leaf certificate ids to reissue (needed ones only; CAs never)."""
    return [
        s.id
        for s in statuses
        if s.needed and s.id not in CA_IDS and (everything or s.days_left < days)
    ]


def _mode(rel: str) -> int:
    return 0o600 if rel.endswith((".key", ".conf")) or rel == ENCRYPTION_CONFIG else 0o644


def reissue(
    loaded: LoadedSite, ids: Sequence[str], now: datetime, keys: KeySource | None = None
) -> PkiBundle:
    """Issue ``ids`` again in the state folder; returns the new bundle."""
    folder = pki_dir(loaded)
    stored = read_store(folder)
    if not stored:
        raise OperationError(f"{folder}: no PKI yet; run `kubeprem apply` first")
    drop = {f"{i}.crt" for i in ids} | {f"{i}.key" for i in ids}
    files, _, bundle = converge(
        loaded.site,
        {k: v for k, v in stored.items() if k not in drop},
        now,
        keys or SystemKeySource(),
    )
    for rel, content in files.items():
        data = content.reveal() if isinstance(content, Sensitive) else content
        if stored.get(rel) != data:
            path = folder / rel
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(path, data, _mode(rel))
    return bundle


def roll_order(site: Site) -> list[str]:
    """etcd members and controllers first (site order), then the rest."""
    first = [m.name for m in site.machines if m.has("etcd") or m.has("control-plane")]
    return first + [m.name for m in site.machines if m.name not in first]


@dataclass
class RollReport:
    order: list[str] = field(default_factory=list)  # machines that changed, in order
    changes: dict[str, int] = field(default_factory=dict)


async def check_machine(site: Site, name: str, transports: Mapping[str, Transport]) -> None:
    """The health checks after one machine changed (see the module docstring)."""
    m = site.machine(name)
    t = transports[name]
    if m.has("etcd"):
        await gates.etcd_healthy(t, timeout=120)
    if m.has("control-plane"):
        await gates.apiserver_ready(t, site, timeout=180)
    others = [c.name for c in site.controllers if c.name != name and c.name in transports]
    asker = transports[others[0]] if others else transports[site.controllers[0].name]
    await gates.vip_ready(asker, timeout=60)
    if m.has("worker"):
        await gates.nodes_ready(asker, [name], timeout=180)


async def roll(
    site: Site,
    plan: Plan,
    transports: Mapping[str, Transport],
    *,
    only: Sequence[str] | None = None,
    say: Say = _quiet,
    check: Callable[[Site, str, Mapping[str, Transport]], Awaitable[None]] | None = None,
) -> RollReport:
    """Apply ``plan`` one machine at a time, each checked before the next."""
    report = RollReport()
    checker = check or check_machine
    for name in roll_order(site):
        if only is not None and name not in only:
            continue
        hp = plan.hosts.get(name)
        if hp is None or not hp.changes:
            continue
        say(f"{name}: {len(hp.changes)} changes")
        await execute(Plan({name: HostPlan(name, hp.changes, ())}), transports)
        await checker(site, name, transports)
        report.order.append(name)
        report.changes[name] = len(hp.changes)
    return report


@dataclass
class RenewReport:
    renewed: list[str]
    roll: RollReport


async def renew(
    loaded: LoadedSite,
    transports: Mapping[str, Transport],
    now: datetime,
    *,
    days: int = DEFAULT_DAYS,
    everything: bool = False,
    say: Say = _quiet,
    keys: KeySource | None = None,
) -> RenewReport:
    ids = due(check_pki(loaded, now), days=days, everything=everything)
    if not ids:
        say(f"no leaf certificate has fewer than {days} days left")
        return RenewReport([], RollReport())
    say(f"reissue {len(ids)} certificates: {', '.join(ids)}")
    bundle = reissue(loaded, ids, now, keys)
    cplan = await make_plan(loaded, bundle, None, transports)
    report = await roll(loaded.site, cplan.hosts, transports, say=say)
    return RenewReport(ids, report)

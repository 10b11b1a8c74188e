"""`kubeprem node add|remove`: one machine in or out of a running cluster.

Called by the node commands.

Remove (NAME still in the site file; take it out afterwards):
- a worker: ``kubectl drain`` (DaemonSets ignored, emptyDir data deleted),
  ``kubectl delete node``, then reset the machine;
- a controller/etcd member: refuse unless every member is healthy and at
  least two remain; stop its control plane (HAProxy on the others stops
  sending it requests), ``etcdctl member remove`` from another member,
  check quorum of the rest, then reset the machine. The other controllers'
  HAProxy/keepalived configuration and API servers' --etcd-servers drop it
  at the next `kubeprem apply` once NAME is out of the site file.

Add (NAME already in the site file):
- a worker: the plan must change only NAME and the load-balancer machines
  (anything else is refused as drift, to keep the change small), then apply
  runs its phases with their gates;
- a controller/etcd member: every machine may change (the firewall lets
  the new machine in, API servers get it in --etcd-servers and a serving
  certificate with its address, HAProxy and keepalived their new peer). The
  add refuses unless every member is healthy; then ``etcdctl member add``
  from a member (skipped when a rerun finds NAME already added), the state
  folder records that NAME joined a running cluster (its etcd starts with
  ``initial-cluster-state=existing``, see ``joined``), and apply runs: the
  new member starts and catches up before the others restart one at a time
  (apply's rolled phases), so quorum holds throughout.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kubeprem.components import etcd
from kubeprem.errors import InputError, OperationError
from kubeprem.pki.bundle import PkiBundle
from kubeprem.pki.store import write_atomic
from kubeprem.site.load import LoadedSite
from kubeprem.site.model import Site
from kubeprem.transport.base import Transport
from kubeprem.workflows import gates
from kubeprem.workflows.reset import ResetPlan, reset

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def member_id(output: str, name: str) -> str | None:
    """The hex member ID of ``name`` from ``etcdctl member list -w json``."""
    for m in json.loads(output).get("members", []):
        if m.get("name") == name:
            return format(int(m["ID"]), "x")
    return None


# -- members that joined a running etcd ------------------------------------------

JOINED_FILE = "etcd-joined.json"


def joined_path(loaded: LoadedSite) -> Path:
    return loaded.state_dir / JOINED_FILE


def joined(loaded: LoadedSite) -> frozenset[str]:
    """Machines whose etcd member was added to a running cluster (node add).
    The record stays after the add: their unit keeps saying ``existing``, so
    later plans do not churn it."""
    path = joined_path(loaded)
    if not path.exists():
        return frozenset()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return frozenset(str(n) for n in doc["joined"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OperationError(
            f"{path}: unreadable ({exc}); it lists etcd members that joined"
        ) from exc


def record_joined(loaded: LoadedSite, name: str) -> None:
    names = sorted(joined(loaded) | {name})
    text = json.dumps({"joined": names}, indent=2) + "\n"
    write_atomic(joined_path(loaded), text.encode(), 0o600)


def member_state(output: str, name: str, peer_url: str) -> str:
    """From ``etcdctl member list -w json``: "absent"; "added" (listed, not
    started yet: an earlier add stopped before the start); "started"; or
    "conflict" when NAME's peer URL belongs to another member."""
    for m in json.loads(output).get("members", []):
        if peer_url in (m.get("peerURLs") or []):
            if m.get("name") not in ("", None, name):
                return "conflict"
            return "started" if m.get("name") == name else "added"
        if m.get("name") == name:
            return "conflict"
    return "absent"


async def add_member(
    site: Site, transports: Mapping[str, Transport], name: str, say: Say = _quiet
) -> str:
    """``etcdctl member add`` for NAME, asked of a healthy existing member,
    unless NAME is already listed. Returns what was found or done."""
    m = site.machine(name)
    others = [x.name for x in site.etcd_members if x.name != name]
    asker = transports[others[0]]
    await gates.etcd_healthy(asker, timeout=60)  # quorum before: all members healthy
    listing = await asker.run(gates.etcdctl("member", "list", "-w", "json"), step="member list")
    state = member_state(listing.stdout, name, etcd.peer_url(m))
    if state == "conflict":
        raise OperationError(
            f"etcd lists another member under {name}'s name or peer URL {etcd.peer_url(m)}; "
            "remove it first (kubeprem node remove) or fix the site file"
        )
    if state == "absent":
        say(f"etcd member add {name} {etcd.peer_url(m)}")
        await asker.run(
            gates.etcdctl("member", "add", name, f"--peer-urls={etcd.peer_url(m)}"),
            step=f"etcd member add {name}",
        )
        return "added"
    return state


async def join_etcd(
    loaded: LoadedSite, transports: Mapping[str, Transport], name: str, say: Say = _quiet
) -> bool:
    """Before apply adds ``name``: when it is an etcd member not yet started,
    add it to the member list (``add_member``) and record the join, so its
    etcd starts with initial-cluster-state=existing. True when the record
    changed what is rendered, so the plan must be made again."""
    if not loaded.site.machine(name).has("etcd"):
        return False
    found = await add_member(loaded.site, transports, name, say=say)
    if found == "started" or name in joined(loaded):
        return False
    record_joined(loaded, name)
    return True


def unexpected_changes(site: Site, changed: Sequence[str], name: str) -> list[str]:
    """Machines a `node add NAME` plan would change besides NAME and the lb machines."""
    allowed = {name} | {m.name for m in site.machines if m.has("lb")}
    return sorted(set(changed) - allowed)


async def remove_worker(
    site: Site, bundle: PkiBundle, transports: Mapping[str, Transport], name: str, say: Say
) -> list[ResetPlan]:
    asker = transports[site.controllers[0].name]
    say(f"drain {name}")
    await asker.run(
        gates.kubectl(
            "drain",
            name,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--force",
            "--timeout=180s",
        ),
        step=f"drain {name}",
        timeout=240,
    )
    await asker.run(
        gates.kubectl("delete", "node", name, "--ignore-not-found"), step=f"delete node {name}"
    )
    return await reset(site, bundle, transports, [name], say=say)


async def remove_member(
    site: Site, bundle: PkiBundle, transports: Mapping[str, Transport], name: str, say: Say
) -> list[ResetPlan]:
    member = site.machine(name).has("etcd")
    others = [m.name for m in site.etcd_members if m.name != name]
    if member and len(others) < 2:
        raise InputError(
            f"removing {name} would leave {len(others)} etcd member(s): keep at least two "
            "(three for a cluster that survives a failure); add a member first"
        )
    if not [m for m in site.controllers if m.name != name]:
        raise InputError(f"{name} is the only controller: the cluster would have no API server")
    asker = transports[others[0]]
    await gates.etcd_healthy(asker, timeout=30)  # quorum before: all members healthy
    mid = None
    if member:
        listing = await asker.run(gates.etcdctl("member", "list", "-w", "json"), step="member list")
        mid = member_id(listing.stdout, name)
    if name in {m.name for m in site.controllers}:
        say(f"stop the control plane on {name}")
        await transports[name].run(
            [
                "systemctl",
                "disable",
                "--now",
                "keepalived",
                "haproxy",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            ],
            step="stop control plane",
            check=False,
            timeout=180,
        )
    if mid is not None:
        say(f"etcd member remove {name} ({mid})")
        await asker.run(gates.etcdctl("member", "remove", mid), step=f"etcd member remove {name}")
    if member:
        await transports[name].run(["systemctl", "disable", "--now", "etcd"], step="stop etcd")
        await gates.etcd_healthy(asker, timeout=60)  # quorum after, among the rest
    await gates.vip_ready(asker, timeout=60)
    return await reset(site, bundle, transports, [name], say=say)


async def remove_node(
    site: Site,
    bundle: PkiBundle,
    transports: Mapping[str, Transport],
    name: str,
    *,
    say: Say = _quiet,
) -> list[ResetPlan]:
    m = site.machine(name)
    if m.has("etcd") or m.has("control-plane"):
        return await remove_member(site, bundle, transports, name, say)
    if m.has("worker"):
        return await remove_worker(site, bundle, transports, name, say)
    return await reset(site, bundle, transports, [name], say=say)


def check_add(site: Site, name: str, changed: Sequence[str]) -> None:
    """Refuse an add whose plan changes machines it should not (a worker
    add touches only NAME and the lb machines; a controller every machine)."""
    m = site.machine(name)
    if m.has("etcd") or m.has("control-plane"):
        if len(site.etcd_members) < 2:
            raise InputError(f"{name}: a cluster needs etcd members besides {name} to join")
        return
    extra = unexpected_changes(site, changed, name)
    if extra:
        raise OperationError(
            f"adding {name} would also change {', '.join(extra)}; run `kubeprem plan` and "
            "converge those first (kubeprem apply)"
        )

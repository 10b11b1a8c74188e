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

Add (NAME already in the site file): the plan must change only NAME and the
load-balancer machines (anything else is refused as drift, to keep the
change small), then apply runs its phases with their gates. A new etcd
member is refused: the etcd renderer bootstraps members with
``initial-cluster-state=new`` only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from kubeprem.errors import InputError, OperationError
from kubeprem.pki.bundle import PkiBundle
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
    others = [m.name for m in site.etcd_members if m.name != name]
    if len(others) < 2:
        raise InputError(
            f"removing {name} would leave {len(others)} etcd member(s): keep at least two "
            "(three for a cluster that survives a failure); add a member first"
        )
    asker = transports[others[0]]
    await gates.etcd_healthy(asker, timeout=30)  # quorum before: all members healthy
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
    """Refuse an add that needs what kubeprem cannot do safely yet."""
    m = site.machine(name)
    if m.has("etcd"):
        raise InputError(
            f"{name} is an etcd member: adding a member to a running etcd is not supported "
            "yet (the etcd unit bootstraps with initial-cluster-state=new)"
        )
    extra = unexpected_changes(site, changed, name)
    if extra:
        raise OperationError(
            f"adding {name} would also change {', '.join(extra)}; run `kubeprem plan` and "
            "converge those first (kubeprem apply)"
        )

"""Upgrades: the version-skew rules that forbid some, the order of the
steps, and running them. Called by `kubeprem upgrade plan` (pure: from a
version given on the command line) and `kubeprem upgrade apply` (the running
versions read from the machines, then the steps executed).

Rules (Kubernetes' version-skew policy, https://kubernetes.io/releases/version-skew-policy/):

- the control plane moves one minor version at a time (1.35 -> 1.37 must go
  through 1.36); a downgrade of the minor version is refused; the major
  version must stay;
- both versions must be in kubeprem's version table
  (``components.versions.SUPPORTED``);
- kubelets may lag the API server by up to three minor versions (two before
  1.28) and may never be newer: workers are upgraded last, after every
  controller.

Order: a backup, then etcd member by member when the etcd version changes
(quorum checked after each), then the control plane machine by machine
(/readyz on each and through the VIP), then the workers one at a time
(drain, upgrade kubelet and kube-proxy, uncordon, Ready).

`upgrade apply` executes the same plan `apply` would (the site file names the
new version), cut into those steps by ``upgrade_steps``: one machine's part
at a time, each checked healthy before the next. Nothing is remembered
between runs but a node annotation on a worker it cordoned: a rerun after a
failure plans again, finds the machines already done converged, and goes on
from the first that is not (uncordoning a worker it left cordoned).
"""

from __future__ import annotations

import json
import posixpath
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubeprem.addons import dns, smoke
from kubeprem.components.versions import SUPPORTED, TABLE
from kubeprem.errors import InputError
from kubeprem.images.builder import ImageArchive
from kubeprem.plan.facts import HostFacts
from kubeprem.plan.model import Change, HostPlan, Plan, RestartService, WriteFile
from kubeprem.site.load import LoadedSite
from kubeprem.site.model import Site
from kubeprem.transport.base import Transport
from kubeprem.workflows import gates
from kubeprem.workflows.apply import (
    PHASES,
    ClusterPlan,
    Phase,
    Say,
    check_preflight,
    cluster_objects,
    host_gate,
    import_images,
    phase_plan,
    prepare_hosts,
)
from kubeprem.workflows.desired import ARTIFACTS_BY_ROLE
from kubeprem.workflows.execute import Progress, execute


def parse_version(text: str) -> tuple[int, int, int]:
    parts = text.strip().lstrip("v").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
        patch = int(parts[2].split("+")[0].split("-")[0]) if len(parts) > 2 else 0
    except (ValueError, IndexError):
        raise InputError(f"{text!r} is not a Kubernetes version (like 1.37.2)") from None
    return major, minor, patch


def kubelet_max_lag(apiserver_minor: int) -> int:
    """How many minors a kubelet may lag an API server of this minor."""
    return 3 if apiserver_minor >= 28 else 2


def skew_problems(current: str, target: str) -> list[str]:
    """Why going from ``current`` to ``target`` is not allowed (empty: allowed)."""
    cur, tgt = parse_version(current), parse_version(target)
    out: list[str] = []
    if cur[0] != tgt[0]:
        out.append(f"major version change {cur[0]} -> {tgt[0]} is not supported")
        return out
    if tgt[:2] not in SUPPORTED:
        out.append(f"{target} is not a version kubeprem supports")
    if cur[:2] not in SUPPORTED:
        out.append(f"{current} is not a version kubeprem supports")
    if tgt < cur:
        out.append(f"downgrade {current} -> {target} is refused (etcd data and APIs move forward)")
    elif tgt[1] - cur[1] > 1:
        steps = " -> ".join(f"1.{m}" for m in range(cur[1], tgt[1] + 1))
        out.append(
            f"{current} -> {target} skips minor versions; the control plane moves one minor at "
            f"a time: {steps}"
        )
    return out


def kubelet_skew_ok(apiserver: str, kubelet: str) -> bool:
    a, k = parse_version(apiserver), parse_version(kubelet)
    return a[0] == k[0] and k[1] <= a[1] and a[1] - k[1] <= kubelet_max_lag(a[1])


@dataclass(frozen=True)
class Step:
    kind: str  # backup, etcd, control-plane, worker
    machine: str | None
    actions: tuple[str, ...]

    def describe(self) -> str:
        where = f"{self.machine}: " if self.machine else ""
        return f"{self.kind} {where}{'; '.join(self.actions)}"


@dataclass(frozen=True)
class UpgradePlan:
    current: str
    target: str
    steps: tuple[Step, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.current,
            "to": self.target,
            "steps": [
                {"kind": s.kind, "machine": s.machine, "actions": list(s.actions)}
                for s in self.steps
            ],
        }


def upgrade_plan(site: Site, current: str) -> UpgradePlan:
    """The ordered steps from ``current`` to the site's version; InputError if forbidden."""
    target = site.cluster.kubernetes_version
    problems = skew_problems(current, target)
    if problems:
        raise InputError("upgrade refused: " + "; ".join(problems))
    cur, tgt = parse_version(current), parse_version(target)
    steps: list[Step] = [Step("backup", None, ("kubeprem backup (etcd snapshot and PKI)",))]
    if cur == tgt:
        return UpgradePlan(current, target, ())
    etcd_from = TABLE[cur[:2]].etcd_version
    etcd_to = TABLE[tgt[:2]].etcd_version
    if etcd_from != etcd_to:
        for m in site.etcd_members:
            steps.append(
                Step(
                    "etcd",
                    m.name,
                    (f"etcd {etcd_from} -> {etcd_to}", "restart etcd", "wait for quorum"),
                )
            )
    for m in site.controllers:
        steps.append(
            Step(
                "control-plane",
                m.name,
                (
                    f"kube-apiserver, kube-controller-manager, kube-scheduler -> {target}",
                    "restart them",
                    "wait for /readyz here and through the VIP",
                ),
            )
        )
    for m in site.workers:
        steps.append(
            Step(
                "worker",
                m.name,
                (
                    f"kubectl drain {m.name} --ignore-daemonsets --delete-emptydir-data",
                    f"kubelet, kube-proxy -> {target}",
                    f"kubectl uncordon {m.name}",
                    "wait for Ready",
                ),
            )
        )
    return UpgradePlan(current, target, tuple(steps))


# -- upgrade apply ---------------------------------------------------------------

# Set on a worker the upgrade cordoned, removed when it uncordons it: a rerun
# after a failure uncordons what it finds so marked.
CORDONED = "kubeprem.io/upgrade-cordoned"


def check_upgrade(site: Site, facts: Mapping[str, HostFacts]) -> str:
    """The release the control plane runs (the lowest of its API servers);
    InputError naming every broken rule when going to the site's release is
    not allowed, or when there is nothing to upgrade."""
    target = site.cluster.kubernetes_version
    control = {
        m.name: facts[m.name].versions["kube-apiserver"]
        for m in site.controllers
        if "kube-apiserver" in facts[m.name].versions
    }
    if not control:
        raise InputError(
            "upgrade: no controller has kube-apiserver installed, so there is nothing to "
            "upgrade; bring the cluster up with `kubeprem apply`"
        )
    current = min(control.values(), key=parse_version)
    newest = max(control.values(), key=parse_version)
    problems = skew_problems(current, target) if current != target else []
    if parse_version(newest) > parse_version(target):
        ahead = ", ".join(f"{h} runs {v}" for h, v in control.items() if v == newest)
        problems.append(f"{ahead}: downgrade to {target} is refused")
    for m in site.workers:
        kubelet = facts[m.name].versions.get("kubelet")
        if kubelet and not kubelet_skew_ok(target, kubelet):
            problems.append(
                f"{m.name} runs kubelet {kubelet}, outside the skew the {target} API server "
                f"allows (at most {kubelet_max_lag(parse_version(target)[1])} minors older, "
                "never newer)"
            )
    if problems:
        raise InputError(
            f"upgrade from {current} to {target} refused, nothing changed: " + "; ".join(problems)
        )
    return current


def _only(part: Plan, keep: Callable[[Change], bool]) -> Plan:
    return Plan(
        {h: HostPlan(h, tuple(c for c in hp.changes if keep(c))) for h, hp in part.hosts.items()}
    )


def _etcd_binary(c: Change) -> bool:
    return (
        isinstance(c, WriteFile)
        and c.component == "artifacts"
        and posixpath.basename(c.path) in ARTIFACTS_BY_ROLE["etcd"]
    )


@dataclass(frozen=True)
class UpgradeStep:
    """One machine's part of the upgrade, executed phase by phase."""

    kind: str  # etcd, control-plane, machine, worker
    host: str
    parts: tuple[tuple[Phase, Plan], ...]

    @property
    def changes(self) -> int:
        return sum(p.total() for _, p in self.parts)

    @property
    def restarts(self) -> tuple[str, ...]:
        return tuple(
            c.service.removesuffix(".service")
            for _, p in self.parts
            for hp in p.hosts.values()
            for c in hp.changes
            if isinstance(c, RestartService)
        )

    def describe(self) -> str:
        also = f", restarts {', '.join(self.restarts)}" if self.restarts else ""
        drain = "drain, " if self.kind == "worker" else ""
        return f"{self.kind} {self.host}: {drain}{self.changes} changes{also}"


def upgrade_steps(site: Site, cplan: ClusterPlan) -> list[UpgradeStep]:
    """The full plan cut into machine steps, in the upgrade's order: etcd
    member by member when its binaries change (only etcd's binaries and
    files), then each controller, then the other machines that run no
    kubelet, then each worker. Pure."""
    phased = [p for p in PHASES if p.components]
    etcd_phase = next(p for p in phased if p.name == "etcd")

    def parts(
        host: str, phases: Sequence[Phase], keep: Callable[[Change], bool]
    ) -> tuple[tuple[Phase, Plan], ...]:
        one = Plan({host: cplan.hosts.hosts[host]}) if host in cplan.hosts.hosts else Plan({})
        out = []
        for phase in phases:
            part = _only(phase_plan(one, cplan.desired, phase), keep)
            if not part.empty:
                out.append((phase, part))
        return tuple(out)

    steps: list[UpgradeStep] = []
    etcd_done: set[str] = set()
    for m in site.etcd_members:
        binaries = parts(m.name, phased[:1], _etcd_binary)
        if binaries:
            steps.append(
                UpgradeStep("etcd", m.name, binaries + parts(m.name, [etcd_phase], lambda c: True))
            )
            etcd_done.add(m.name)

    def rest(name: str) -> tuple[tuple[Phase, Plan], ...]:
        if name not in etcd_done:
            return parts(name, phased, lambda c: True)
        others = [p for p in phased if p is not etcd_phase]
        return parts(name, others, lambda c: not _etcd_binary(c))

    ordered_machines = (
        [("control-plane", m) for m in site.controllers]
        + [
            ("machine", m)
            for m in site.machines
            if not m.has("control-plane") and not m.has("worker")
        ]
        + [("worker", m) for m in site.workers if not m.has("control-plane")]
    )
    for kind, m in ordered_machines:
        found = rest(m.name)
        if found:
            steps.append(UpgradeStep(kind, m.name, found))
    return steps


@dataclass
class StepResult:
    kind: str
    host: str
    changes: int
    seconds: float


@dataclass
class UpgradeReport:
    current: str
    target: str
    steps: list[StepResult] = field(default_factory=list)
    backup: str | None = None
    uncordoned: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.current,
            "to": self.target,
            "backup": self.backup,
            "steps": [s.__dict__ for s in self.steps],
            "uncordoned": self.uncordoned,
            "seconds": round(self.seconds, 2),
        }


def cordoned_by_upgrade(nodes: Mapping[str, Any]) -> list[str]:
    """Nodes (from `kubectl get nodes -o json`) that carry the upgrade's mark."""
    return sorted(
        item["metadata"]["name"]
        for item in nodes.get("items", [])
        if CORDONED in (item["metadata"].get("annotations") or {})
    )


async def _kubectl(t: Transport, *args: str, step: str, timeout: float = 60) -> str:
    r = await t.run(gates.kubectl(*args), step=step, timeout=timeout)
    return r.stdout


async def drain(t: Transport, node: str, *, timeout_s: int, say: Say) -> None:
    """Mark, cordon and drain ``node``: evictions, so PodDisruptionBudgets
    hold (kubectl retries an eviction a budget refuses, until the timeout).
    A pod no controller owns stops the drain: it would not come back."""
    await _kubectl(
        t, "annotate", "node", node, f"{CORDONED}=true", "--overwrite", step=f"mark {node}"
    )
    say(f"  {node}: cordon and drain (PodDisruptionBudgets respected, up to {timeout_s} s)")
    await _kubectl(
        t,
        "drain",
        node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        f"--timeout={timeout_s}s",
        step=f"drain {node}",
        timeout=timeout_s + 60,
    )


async def uncordon(t: Transport, node: str) -> None:
    await _kubectl(t, "uncordon", node, step=f"uncordon {node}")
    await _kubectl(t, "annotate", "node", node, f"{CORDONED}-", step=f"unmark {node}")


async def _step_gate(
    phase: Phase, site: Site, host: str, transports: Mapping[str, Transport]
) -> None:
    if phase.name in ("etcd", "control-plane", "load-balancer"):
        await host_gate(phase, site, host, transports)
        if phase.name == "control-plane":
            await gates.vip_ready(transports[site.controllers[0].name])


async def run_upgrade(
    loaded: LoadedSite,
    cplan: ClusterPlan,
    current: str,
    transports: Mapping[str, Transport],
    images: Sequence[ImageArchive],
    *,
    say: Say,
    progress: Progress | None = None,
    backup: Callable[[], Awaitable[str]] | None = None,
    drain_timeout: int = 600,
    clock: Callable[[], float] = time.monotonic,
) -> UpgradeReport:
    """Run the upgrade steps of ``cplan`` (from ``current`` to the site's
    release), each machine healthy before the next; then the cluster-wide
    phases apply runs (objects, images, DNS, smoke)."""
    site = loaded.site
    start = clock()
    check_preflight(cplan, upgrading=True)
    report = UpgradeReport(current, site.cluster.kubernetes_version)
    asker = transports[site.controllers[0].name]
    steps = upgrade_steps(site, cplan)
    if backup is not None and steps:
        say("backup before the upgrade")
        report.backup = await backup()
    await prepare_hosts(site, cplan.desired, transports)
    marked = set(
        cordoned_by_upgrade(
            json.loads(await _kubectl(asker, "get", "nodes", "-o", "json", step="nodes"))
        )
    )
    workers_at = next((i for i, s in enumerate(steps) if s.kind == "worker"), len(steps))
    for i, step in enumerate(steps):
        if i == workers_at:
            # the new release's images (the sandbox) before any kubelet of it starts
            await import_images(site, transports, images, say)
        t0 = clock()
        say(f"[{i + 1}/{len(steps)}] {step.describe()}")
        if step.kind == "worker":
            await drain(asker, step.host, timeout_s=drain_timeout, say=say)
            marked.add(step.host)
        for phase, part in step.parts:
            await execute(part, transports, progress=progress)
            await _step_gate(phase, site, step.host, transports)
        if step.kind == "worker":
            await gates.nodes_ready(asker, [step.host])
            await uncordon(asker, step.host)
            marked.discard(step.host)
            say(f"  {step.host}: Ready, uncordoned")
        report.steps.append(StepResult(step.kind, step.host, step.changes, round(clock() - t0, 2)))
    if workers_at == len(steps):
        await import_images(site, transports, images, say)
    for node in sorted(marked):
        # a worker an earlier, interrupted run cordoned and did not get back to
        await gates.nodes_ready(asker, [node])
        await uncordon(asker, node)
        report.uncordoned.append(node)
        say(f"{node}: uncordoned (left cordoned by an interrupted upgrade)")
    say("cluster objects, DNS and smoke test on the new release")
    await gates.vip_ready(asker)
    await cluster_objects(site, asker)
    await dns.deploy(site, asker)
    await smoke.deploy(site, asker)
    report.seconds = clock() - start
    return report

"""Upgrade planning: the order of an upgrade, and the version-skew rules that
forbid some. Pure; called by `kubeprem upgrade plan` (and tested as plan
tests: the lab has only one buildable version).

Rules (Kubernetes' version-skew policy, https://kubernetes.io/releases/version-skew-policy/):

- the control plane moves one minor version at a time (1.29 -> 1.31 must go
  through 1.30); a downgrade of the minor version is refused; the major
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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubeprem.components.versions import SUPPORTED, TABLE
from kubeprem.errors import InputError
from kubeprem.site.model import Site


def parse_version(text: str) -> tuple[int, int, int]:
    parts = text.strip().lstrip("v").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
        patch = int(parts[2].split("+")[0].split("-")[0]) if len(parts) > 2 else 0
    except (ValueError, IndexError):
        raise InputError(f"{text!r} is not a Kubernetes version (like 1.30.4)") from None
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

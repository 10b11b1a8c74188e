"""`kubeprem status`: what each machine and component is doing now.

Reads the machines over SSH (etcd endpoint status on each member, /readyz
on each API server, nodes from the API, versions, firing alerts from
Prometheus through the API server's service proxy) and the certificates'
expiry from the local PKI folder. Pure parsing is kept in small functions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from kubeprem.components import paths
from kubeprem.components.versions import features
from kubeprem.pki.check import WARN_BEFORE, check_pki
from kubeprem.pki.store import pki_dir
from kubeprem.site.load import LoadedSite
from kubeprem.site.model import Machine, Site
from kubeprem.transport.base import Transport
from kubeprem.workflows import gates


def admin_kubeconfig(loaded: LoadedSite) -> Path:
    return pki_dir(loaded) / "kubeconfig" / "admin.conf"


@dataclass
class MachineStatus:
    name: str
    roles: tuple[str, ...]
    reachable: bool = True
    error: str = ""
    etcd: str = "-"  # "leader", "follower", "down", "-"
    api: str = "-"  # "ready", "not ready: ...", "-"
    node: str = "-"  # "Ready", "NotReady", "missing", "-"
    kubelet: str = "-"
    containerd: str = "-"
    cert_days: int | None = None
    cgroupfs: str | None = None  # stat -fc %T /sys/fs/cgroup on workers: cgroup2fs, tmpfs

    def healthy(self) -> bool:
        if not self.reachable:
            return False
        return (
            self.etcd in ("-", "leader", "follower")
            and self.api in ("-", "ready")
            and self.node in ("-", "Ready")
        )


@dataclass(frozen=True)
class FiringAlert:
    name: str
    severity: str
    where: str  # the node, else namespace/pod, else the instance
    summary: str


@dataclass
class ClusterStatus:
    machines: list[MachineStatus]
    warnings: list[str] = field(default_factory=list)
    # None: Prometheus could not be asked (monitoring not deployed, or down)
    alerts: list[FiringAlert] | None = None

    @property
    def healthy(self) -> bool:
        return all(m.healthy() for m in self.machines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "machines": [m.__dict__ | {"healthy": m.healthy()} for m in self.machines],
            "warnings": self.warnings,
            "alerts": None if self.alerts is None else [a.__dict__ for a in self.alerts],
        }


def cert_days_by_machine(loaded: LoadedSite, now: datetime) -> tuple[dict[str, int], list[str]]:
    """Fewest days left among the certificates each machine uses."""
    statuses = [s for s in check_pki(loaded, now) if s.needed]
    shared = min((s.days_left for s in statuses if "/" not in s.id), default=None)
    out: dict[str, int] = {}
    for m in loaded.site.machines:
        own = [s.days_left for s in statuses if f"/{m.name}/" in f"/{s.id}/"]
        days = [d for d in [*own, shared] if d is not None]
        if days:
            out[m.name] = min(days)
    warnings = [
        f"certificate {s.id} expires in {s.days_left} days ({s.not_after:%Y-%m-%d}); "
        "renew with `kubeprem certs renew`"
        for s in statuses
        if s.days_left < WARN_BEFORE.days
    ]
    return out, warnings


def cgroup_warning(site: Site, machine: str, cgroupfs: str | None) -> str | None:
    """A worker on cgroup v1 under a kubelet that refuses v1 by default: it
    runs (kubeprem sets failCgroupV1: false there), but upstream is removing
    v1 support, so the operator should hear of it before an upgrade does."""
    if cgroupfs != "tmpfs" or not features(site).kubelet_fail_cgroup_v1:
        return None
    return (
        f"{machine}: cgroup v1 (the kubelet {site.cluster.version} runs only with "
        "failCgroupV1: false, which kubeprem sets; upstream deprecates v1: move the "
        "machine to cgroup v2, e.g. systemd.unified_cgroup_hierarchy=1)"
    )


def parse_endpoint_status(output: str) -> str:
    """'leader' or 'follower' from `etcdctl endpoint status -w json`."""
    docs = json.loads(output)
    doc = docs[0] if isinstance(docs, list) else docs
    st = doc["Status"]
    return "leader" if st["leader"] == st["header"]["member_id"] else "follower"


# Prometheus's alerts API behind the API server's service proxy (port by number:
# the Service names it "web").
MONITORING_NAMESPACE = "monitoring"
ALERTS_PATH = (
    f"/api/v1/namespaces/{MONITORING_NAMESPACE}/services/prometheus:9090/proxy/api/v1/alerts"
)


def parse_alerts(output: str) -> list[FiringAlert]:
    """The firing alerts of Prometheus's ``/api/v1/alerts`` answer, sorted
    (pending ones are left out: they have not lasted their ``for:`` yet)."""
    doc = json.loads(output)
    out = []
    for a in doc.get("data", {}).get("alerts", []):
        if a.get("state") != "firing":
            continue
        labels = a.get("labels", {})
        if labels.get("node"):
            where = labels["node"]
        elif labels.get("pod"):
            where = f"{labels.get('namespace', '')}/{labels['pod']}"
        else:
            where = labels.get("instance") or labels.get("namespace") or "-"
        out.append(
            FiringAlert(
                labels.get("alertname", "?"),
                labels.get("severity", "-"),
                where,
                a.get("annotations", {}).get("summary", ""),
            )
        )
    return sorted(out, key=lambda f: (f.severity != "critical", f.name, f.where))


async def _machine(m: Machine, t: Transport, site_api_port: int) -> MachineStatus:
    ms = MachineStatus(m.name, tuple(m.roles))
    try:
        if m.has("etcd"):
            r = await t.run(
                gates.etcdctl("endpoint", "status", "-w", "json"), step="etcd status", check=False
            )
            ms.etcd = parse_endpoint_status(r.stdout) if r.ok else "down"
        if m.has("control-plane"):
            server = f"https://127.0.0.1:{site_api_port}"
            r = await t.run(
                gates.kubectl("get", "--raw=/readyz", server=server), step="readyz", check=False
            )
            ms.api = "ready" if r.ok else "not ready"
        if m.has("worker"):
            r = await t.run(
                [f"{paths.BIN_DIR}/kubelet", "--version"], step="kubelet version", check=False
            )
            ms.kubelet = r.stdout.strip().removeprefix("Kubernetes ") if r.ok else "missing"
            r = await t.run(
                [f"{paths.BIN_DIR}/containerd", "--version"], step="containerd version", check=False
            )
            ms.containerd = r.stdout.split()[2] if r.ok and len(r.stdout.split()) > 2 else "missing"
            r = await t.run(["stat", "-fc", "%T", "/sys/fs/cgroup"], step="cgroup", check=False)
            ms.cgroupfs = (r.stdout.strip() or None) if r.ok else None
    except Exception as exc:  # an unreachable machine is a status, not a crash
        ms.reachable = False
        ms.error = str(exc)
    return ms


async def gather_status(loaded: LoadedSite, transports: Mapping[str, Transport]) -> ClusterStatus:
    site = loaded.site
    machines = await asyncio.gather(
        *(_machine(m, transports[m.name], site.api.apiserver_port) for m in site.machines)
    )
    by_name = {m.name: m for m in machines}
    nodes: dict[str, bool] | None = None
    alerts: list[FiringAlert] | None = None
    for cp in site.controllers:
        if not by_name[cp.name].reachable:
            continue
        r = await transports[cp.name].run(
            gates.kubectl("get", "nodes", "-o", "json"), step="nodes", check=False
        )
        if r.ok:
            nodes = gates.node_conditions(json.loads(r.stdout))
            r = await transports[cp.name].run(
                gates.kubectl("get", f"--raw={ALERTS_PATH}"), step="alerts", check=False
            )
            if r.ok:
                try:
                    alerts = parse_alerts(r.stdout)
                except (ValueError, AttributeError):
                    alerts = None
            break
    for w in site.workers:
        if nodes is not None:
            by_name[w.name].node = (
                "missing" if w.name not in nodes else ("Ready" if nodes[w.name] else "NotReady")
            )
        else:
            by_name[w.name].node = "unknown"
    warnings: list[str] = []
    try:
        days, warnings = cert_days_by_machine(loaded, datetime.now(UTC))
        for name, d in days.items():
            by_name[name].cert_days = d
    except Exception as exc:
        warnings.append(f"cannot read the PKI folder: {exc}")
    for ms in machines:
        if not ms.reachable:
            warnings.append(f"{ms.name}: unreachable: {ms.error}")
        elif (cgroup := cgroup_warning(site, ms.name, ms.cgroupfs)) is not None:
            warnings.append(cgroup)
    return ClusterStatus(list(machines), warnings, alerts)


def alerts_table(alerts: list[FiringAlert]) -> Table:
    t = Table(title="firing alerts")
    for col in ("alert", "severity", "where", "summary"):
        t.add_column(col)
    for a in alerts:
        sev = f"[red]{a.severity}[/]" if a.severity == "critical" else a.severity
        t.add_row(a.name, sev, a.where, a.summary)
    return t


def table(status: ClusterStatus) -> Table:
    t = Table(title="cluster status")
    for col in ("machine", "roles", "etcd", "API", "node", "kubelet", "containerd", "cert days"):
        t.add_column(col)
    for m in status.machines:
        days = "-" if m.cert_days is None else str(m.cert_days)
        if m.cert_days is not None and m.cert_days < WARN_BEFORE.days:
            days = f"[yellow]{days}[/]"
        style = "" if m.healthy() else "[red]"
        t.add_row(
            f"{style}{m.name}{'[/]' if style else ''}",
            ", ".join(m.roles),
            m.etcd,
            m.api,
            m.node,
            m.kubelet,
            m.containerd,
            days,
        )
    return t

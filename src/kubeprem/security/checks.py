"""The hardening checks kubeprem owns, as data: what, why, how bad.

Read by ``kubeprem verify SITE --security`` (through ``evaluate``) and by
the documentation. References are to the CIS Kubernetes Benchmark v1.8.0
(Kubernetes 1.26 to 1.28) where it has the item; ``protectKernelDefaults``
left that version and is cited from v1.6.0. Where kubeprem deliberately
differs from the benchmark the check's ``note`` says so (docs/firewall.md
lists the exceptions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kubeprem.site.model import Role

Severity = Literal["high", "medium", "low"]
Status = Literal["pass", "fail", "unknown", "exception"]


@dataclass(frozen=True)
class Check:
    """One item of the report. ``roles``: the machines it applies to (any of them)."""

    id: str
    title: str
    severity: Severity
    roles: tuple[Role, ...]
    cis: str | None = None
    note: str = ""

    def applies_to(self, roles: list[Role]) -> bool:
        return any(r in roles for r in self.roles)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "roles": list(self.roles),
            "cis": self.cis,
            "note": self.note,
        }


ALL: tuple[Role, ...] = ("etcd", "control-plane", "worker", "lb")
CP: tuple[Role, ...] = ("control-plane",)
WORKER: tuple[Role, ...] = ("worker",)
ETCD: tuple[Role, ...] = ("etcd",)

CHECKS: tuple[Check, ...] = (
    # -- files ---------------------------------------------------------------
    Check(
        "files.keys",
        "Private keys and other secret files are mode 0600 and owned by root:root",
        "high",
        ALL,
        "1.1.19, 1.1.21",
        "also the encryption configuration and HAProxy's client certificate with its key",
    ),
    Check(
        "files.kubeconfigs",
        "Kubeconfigs are mode 0600 and owned by root:root",
        "high",
        ("control-plane", "worker"),
        "1.1.13-1.1.18, 4.1.3-4.1.6",
    ),
    Check(
        "files.certificates",
        "Certificates are owned by root:root and writable by root only",
        "medium",
        ALL,
        "1.1.19, 1.1.20, 4.1.7, 4.1.8",
        "kubeprem keeps certificates (public data) at 0644 as kubeadm does; the "
        "benchmark asks 0600",
    ),
    Check(
        "files.config",
        "Unit and configuration files are owned by root and writable by root only",
        "medium",
        ALL,
        "1.1.1, 1.1.2, 4.1.1, 4.1.2, 4.1.9, 4.1.10",
        "they hold no secrets and are kept at 0644; the benchmark asks 0600",
    ),
    Check(
        "files.etcd-data",
        "The etcd data directory is mode 0700",
        "high",
        ETCD,
        "1.1.11",
        "etcd runs as root here, so the directory is root's, not etcd:etcd (1.1.12)",
    ),
    # -- kube-apiserver --------------------------------------------------------
    Check("apiserver.anonymous-auth", "API server: --anonymous-auth=false", "high", CP, "1.2.1"),
    Check(
        "apiserver.authorization",
        "API server: --authorization-mode includes Node and RBAC, not AlwaysAllow",
        "high",
        CP,
        "1.2.6-1.2.8",
    ),
    Check(
        "apiserver.admission",
        "API server: NodeRestriction admitted, AlwaysAdmit not",
        "medium",
        CP,
        "1.2.10, 1.2.15",
    ),
    Check(
        "apiserver.audit",
        "API server: audit log path, maxage, maxbackup and maxsize set as the site says",
        "medium",
        CP,
        "1.2.17-1.2.20",
    ),
    Check(
        "apiserver.encryption",
        "API server: --encryption-provider-config set (Secrets encrypted in etcd)",
        "high",
        CP,
        "1.2.28",
    ),
    Check("apiserver.profiling", "API server: --profiling=false", "low", CP, "1.2.16"),
    Check(
        "apiserver.tls",
        "API server: TLS to clients, kubelets and etcd (certificates, keys and CAs set)",
        "high",
        CP,
        "1.2.4, 1.2.5, 1.2.24-1.2.27",
    ),
    # -- kubelet -------------------------------------------------------------
    Check(
        "kubelet.anonymous-auth",
        "kubelet: anonymous authentication disabled",
        "high",
        WORKER,
        "4.2.1",
    ),
    Check(
        "kubelet.authorization",
        "kubelet: webhook authentication and authorization, client CA set",
        "high",
        WORKER,
        "4.2.2, 4.2.3",
    ),
    Check("kubelet.read-only-port", "kubelet: readOnlyPort 0", "medium", WORKER, "4.2.4"),
    Check(
        "kubelet.protect-kernel-defaults",
        "kubelet: protectKernelDefaults true",
        "low",
        WORKER,
        "v1.6.0 4.2.6",
        "not possible inside a container (the lab's machines): the kernel settings "
        "are the host's; reported as an exception there",
    ),
    # -- etcd ------------------------------------------------------------------
    Check(
        "etcd.client-tls",
        "etcd: clients need a certificate (--client-cert-auth=true, TLS files set, no auto-tls)",
        "high",
        ETCD,
        "2.1-2.3",
    ),
    Check(
        "etcd.peer-tls",
        "etcd: peers need a certificate (--peer-client-cert-auth=true, TLS files set, "
        "no peer-auto-tls)",
        "high",
        ETCD,
        "2.4-2.6",
    ),
    # -- firewall ----------------------------------------------------------------
    Check(
        "firewall.loaded",
        "Firewall: table inet kubeprem loaded, input policy drop, this machine's sets",
        "high",
        ALL,
        None,
    ),
    Check(
        "firewall.persistent",
        "Firewall: kubeprem-firewall.service enabled, so the rules return after a reboot",
        "medium",
        ALL,
        None,
    ),
)

BY_ID: dict[str, Check] = {c.id: c for c in CHECKS}


@dataclass(frozen=True)
class CheckResult:
    """The state of one check on one machine. ``failed``: fail or unknown."""

    check: Check
    machine: str
    status: Status
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "unknown")

    def to_dict(self) -> dict[str, object]:
        return {
            "machine": self.machine,
            "id": self.check.id,
            "title": self.check.title,
            "severity": self.check.severity,
            "cis": self.check.cis,
            "status": self.status,
            "detail": self.detail,
        }


__all__ = ["BY_ID", "CHECKS", "Check", "CheckResult", "Severity", "Status"]

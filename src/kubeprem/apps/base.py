"""The building blocks of app manifests: typed values that render to API dicts.

Called by every app builder (``redis``, ``postgresql``) and by ``storage``.
Blocks are frozen dataclasses with a ``to_dict()``; whole objects are made
by small functions returning plain dicts, the form the API and the audit
take. Passwords come from one ``PasswordSource`` passed in, so tests are
deterministic, and are carried as ``Sensitive`` until written into a Secret.
"""

from __future__ import annotations

import base64
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kubeprem.sensitive import Sensitive

Obj = dict[str, Any]
PULL = "IfNotPresent"  # air-gapped: images are imported on every node
FS_GROUP = 2000  # volumes are group-owned by it, whatever uid an image runs as
# letters and digits only: safe in redis.conf, haproxy.cfg, YAML and sed without quoting
ALPHABET = string.ascii_letters + string.digits


class PasswordSource(Protocol):
    def password(self, length: int = 32) -> Sensitive[str]: ...


class SystemPasswords:
    """Passwords from the operating system's CSPRNG."""

    def password(self, length: int = 32) -> Sensitive[str]:
        return Sensitive("".join(secrets.choice(ALPHABET) for _ in range(length)))


def labels(app: str, component: str, instance: str | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "kubeprem",
    }
    if instance:
        out["app.kubernetes.io/instance"] = instance
    return out


def selector(app: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/component": component}


def meta(
    name: str,
    namespace: str | None,
    lbls: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> Obj:
    out: Obj = {"name": name}
    if namespace:
        out["namespace"] = namespace
    out["labels"] = dict(lbls)
    if annotations:
        out["annotations"] = dict(annotations)
    return out


@dataclass(frozen=True)
class Resources:
    cpu: str
    memory: str
    cpu_limit: str | None = None  # none: no CPU throttling; memory limit = request

    def to_dict(self) -> Obj:
        limits = {"memory": self.memory}
        if self.cpu_limit:
            limits["cpu"] = self.cpu_limit
        return {"requests": {"cpu": self.cpu, "memory": self.memory}, "limits": limits}


@dataclass(frozen=True)
class Probe:
    kind: Literal["exec", "tcp", "http"]
    target: tuple[str, ...] | int | str  # argv, port, or "port:path"
    period: int = 10
    timeout: int = 3
    failures: int = 3
    initial_delay: int = 0

    def to_dict(self) -> Obj:
        out: Obj
        if self.kind == "exec":
            assert isinstance(self.target, tuple)
            out = {"exec": {"command": list(self.target)}}
        elif self.kind == "tcp":
            out = {"tcpSocket": {"port": self.target}}
        else:
            port, _, path = str(self.target).partition(":")
            out = {"httpGet": {"path": path or "/", "port": int(port)}}
        out.update(
            periodSeconds=self.period, timeoutSeconds=self.timeout, failureThreshold=self.failures
        )
        if self.initial_delay:
            out["initialDelaySeconds"] = self.initial_delay
        return out


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    read_only: bool = False
    sub_path: str | None = None

    def to_dict(self) -> Obj:
        out: Obj = {"name": self.volume, "mountPath": self.path}
        if self.read_only:
            out["readOnly"] = True
        if self.sub_path:
            out["subPath"] = self.sub_path
        return out


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    resources: Resources
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    ports: tuple[tuple[str, int], ...] = ()
    env: tuple[Obj, ...] = ()
    mounts: tuple[Mount, ...] = ()
    readiness: Probe | None = None
    liveness: Probe | None = None

    def to_dict(self) -> Obj:
        out: Obj = {"name": self.name, "image": self.image, "imagePullPolicy": PULL}
        if self.command:
            out["command"] = list(self.command)
        if self.args:
            out["args"] = list(self.args)
        if self.ports:
            out["ports"] = [
                {"name": n, "containerPort": p, "protocol": "TCP"} for n, p in self.ports
            ]
        if self.env:
            out["env"] = [dict(e) for e in self.env]
        out["resources"] = self.resources.to_dict()
        if self.mounts:
            out["volumeMounts"] = [m.to_dict() for m in self.mounts]
        if self.readiness:
            out["readinessProbe"] = self.readiness.to_dict()
        if self.liveness:
            out["livenessProbe"] = self.liveness.to_dict()
        out["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
        return out


def env(name: str, value: str) -> Obj:
    return {"name": name, "value": value}


def env_field(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def env_secret(name: str, secret: str, key: str) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


@dataclass(frozen=True)
class PodSpec:
    containers: tuple[Container, ...]
    volumes: tuple[Obj, ...] = ()
    affinity: Obj | None = None
    service_account: str | None = None
    termination_grace: int = 30
    restart_never: bool = False
    # resolver options (resolv.conf) for the pod's containers, e.g. ("timeout", "1")
    dns_options: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> Obj:
        out: Obj = {}
        if self.affinity:
            out["affinity"] = self.affinity
        out["automountServiceAccountToken"] = self.service_account is not None
        out["containers"] = [c.to_dict() for c in self.containers]
        if self.dns_options:
            out["dnsConfig"] = {"options": [{"name": k, "value": v} for k, v in self.dns_options]}
        out["enableServiceLinks"] = False
        if self.restart_never:
            out["restartPolicy"] = "Never"
        # OnRootMismatch: the kubelet re-groups a volume only while its top folder is
        # not yet ours; recursively on every mount it would also make PostgreSQL's
        # data folder group-writable, which PostgreSQL refuses to start with
        out["securityContext"] = {
            "fsGroup": FS_GROUP,
            "fsGroupChangePolicy": "OnRootMismatch",
            "runAsNonRoot": True,
        }
        if self.service_account:
            out["serviceAccountName"] = self.service_account
        out["terminationGracePeriodSeconds"] = self.termination_grace
        if self.volumes:
            out["volumes"] = [dict(v) for v in self.volumes]
        return out


def anti_affinity(sel: Mapping[str, str], mode: Literal["preferred", "required"]) -> Obj:
    """Spread pods of ``sel`` over machines (kubernetes.io/hostname)."""
    term = {"labelSelector": {"matchLabels": dict(sel)}, "topologyKey": "kubernetes.io/hostname"}
    if mode == "required":
        return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": term}
            ]
        }
    }


def role_binding(
    name: str,
    ns: str | None,
    lbls: Mapping[str, str],
    role: str,
    account: str,
    account_ns: str,
) -> Obj:
    """A RoleBinding in ``ns`` (a ClusterRoleBinding when ``ns`` is None) of
    the (Cluster)Role ``role`` to one ServiceAccount."""
    kind = "RoleBinding" if ns else "ClusterRoleBinding"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta(name, ns, lbls),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": kind.removesuffix("Binding"),
            "name": role,
        },
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": account_ns}],
    }


def namespace(name: str, app: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": meta(name, None, labels(app, "namespace")),
    }


def secret(name: str, ns: str, lbls: Mapping[str, str], data: Mapping[str, Sensitive[str]]) -> Obj:
    """A Secret; the only place a password's value is written (base64, as the API wants)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta(name, ns, lbls),
        "type": "Opaque",
        "data": {
            k: base64.b64encode(v.reveal().encode()).decode("ascii")
            for k, v in sorted(data.items())
        },
    }


def secret_values(obj: Mapping[str, Any] | None) -> dict[str, Sensitive[str]]:
    """The decoded values of a Secret read from the cluster (empty if none)."""
    if not obj:
        return {}
    out = {}
    for k, v in (obj.get("data") or {}).items():
        try:
            out[str(k)] = Sensitive(base64.b64decode(str(v)).decode())
        except (ValueError, UnicodeDecodeError):
            continue
    return out


def config_map(name: str, ns: str, lbls: Mapping[str, str], data: Mapping[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(name, ns, lbls),
        "data": dict(sorted(data.items())),
    }


def service(
    name: str,
    ns: str,
    lbls: Mapping[str, str],
    sel: Mapping[str, str] | None,
    ports: Sequence[tuple[str, int]],
    *,
    headless: bool = False,
    publish_not_ready: bool = False,
) -> Obj:
    spec: Obj = {}
    if headless:
        spec["clusterIP"] = "None"
    spec["ports"] = [{"name": n, "port": p, "protocol": "TCP", "targetPort": p} for n, p in ports]
    if publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    if sel is not None:
        spec["selector"] = dict(sel)
    spec["type"] = "ClusterIP"
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name, ns, lbls), "spec": spec}


def claim_template(name: str, size: str, storage_class: str | None) -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}


def statefulset(
    name: str,
    ns: str,
    lbls: Mapping[str, str],
    sel: Mapping[str, str],
    *,
    replicas: int,
    service_name: str,
    pod: PodSpec,
    claims: Sequence[Obj] = (),
    parallel: bool = False,
    pod_annotations: Mapping[str, str] | None = None,
) -> Obj:
    template_meta: Obj = {"labels": dict(lbls)}
    if pod_annotations:
        template_meta["annotations"] = dict(pod_annotations)
    spec: Obj = {
        "podManagementPolicy": "Parallel" if parallel else "OrderedReady",
        "replicas": replicas,
        "selector": {"matchLabels": dict(sel)},
        "serviceName": service_name,
        "template": {"metadata": template_meta, "spec": pod.to_dict()},
        "updateStrategy": {"type": "RollingUpdate"},
    }
    if claims:
        spec["volumeClaimTemplates"] = list(claims)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(name, ns, lbls),
        "spec": spec,
    }


def deployment(
    name: str,
    ns: str,
    lbls: Mapping[str, str],
    sel: Mapping[str, str],
    *,
    replicas: int,
    pod: PodSpec,
    pod_annotations: Mapping[str, str] | None = None,
) -> Obj:
    template_meta: Obj = {"labels": dict(lbls)}
    if pod_annotations:
        template_meta["annotations"] = dict(pod_annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, ns, lbls),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(sel)},
            "template": {"metadata": template_meta, "spec": pod.to_dict()},
        },
    }


def pdb(name: str, ns: str, lbls: Mapping[str, str], sel: Mapping[str, str]) -> Obj:
    return {
        "apiVersion": "policy/v1beta1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(name, ns, lbls),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(sel)}},
    }


def volume_secret(name: str, secret_name: str) -> Obj:
    return {"name": name, "secret": {"secretName": secret_name, "defaultMode": 0o400}}


def volume_config(name: str, cm: str, mode: int = 0o444) -> Obj:
    return {"name": name, "configMap": {"name": cm, "defaultMode": mode}}


def volume_memory(name: str, size: str = "1Mi") -> Obj:
    """A tmpfs for configuration generated at start: secrets never reach a disk."""
    return {"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": size}}


@dataclass(frozen=True)
class Rendered:
    """An app's manifests plus what deploy must know about them."""

    app: str
    namespace: str
    objects: tuple[Obj, ...]
    storage_classes: tuple[str | None, ...] = ()  # None: the cluster default
    required_spread: int = 0  # machines needed by required anti-affinity
    keep_on_destroy: tuple[str, ...] = ("PersistentVolumeClaim",)
    extra_cleanup: tuple[tuple[str, str], ...] = field(default=())  # (kind, name) made by the app


__all__ = [
    "ALPHABET",
    "FS_GROUP",
    "PULL",
    "Container",
    "Mount",
    "PasswordSource",
    "PodSpec",
    "Probe",
    "Rendered",
    "Resources",
    "SystemPasswords",
    "anti_affinity",
    "claim_template",
    "config_map",
    "deployment",
    "env",
    "env_field",
    "env_secret",
    "labels",
    "meta",
    "namespace",
    "pdb",
    "secret",
    "secret_values",
    "selector",
    "service",
    "statefulset",
    "volume_config",
    "volume_memory",
    "volume_secret",
]

"""The rule table: every rule of ``kubeprem audit`` as data.

Each row gives the ID, severity, one-line explanation and fix; the check is a
small function in the module for its topic. IDs are stable: KP0xx secrets,
KP01x storage and state, KP02x resources and probes, KP03x images, KP04x
StatefulSets, KP05x spreading, KP06x storage classes, KP07x Services, KP08x
privileges, KP09x the audit's own annotations.
"""

from __future__ import annotations

from collections.abc import Iterator

from kubeprem.apps.audit.accept import ANNOTATION, parse_accepts
from kubeprem.apps.audit.index import Index
from kubeprem.apps.audit.model import Hit, Manifest, Rule, Severity
from kubeprem.apps.audit.rules import pods, secrets, security, storage, topology

ERR, WARN, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


def _accept_problems(m: Manifest, index: Index) -> Iterator[Hit]:
    for problem in parse_accepts(m, {r.id for r in RULES}).problems:
        yield Hit(("metadata", "annotations", ANNOTATION), f"{ANNOTATION}: {problem}")


RULES: tuple[Rule, ...] = (
    Rule(
        "KP001",
        ERR,
        "A ConfigMap holds a password, token, key or private key in plain text.",
        "Move the value into a Secret and reference it with secretKeyRef or a Secret volume.",
        secrets.configmap_secret_keys,
    ),
    Rule(
        "KP002",
        WARN,
        "A ConfigMap value looks randomly generated, like a key or token.",
        "If it is a credential, move it into a Secret; if not, accept KP002 with the reason.",
        secrets.configmap_random_values,
    ),
    Rule(
        "KP003",
        ERR,
        "A password or token is written as a plain env value in the manifest.",
        "Put it in a Secret and use valueFrom.secretKeyRef (or mount it as a file).",
        secrets.env_plain_secrets,
    ),
    Rule(
        "KP004",
        ERR,
        "A password or token is read from a ConfigMap instead of a Secret.",
        "Move the key into a Secret and change configMapKeyRef to secretKeyRef.",
        secrets.env_secret_from_configmap,
    ),
    Rule(
        "KP010",
        ERR,
        "A hostPath volume mounts a node directory outside the node-agent system paths.",
        "Keep state on a PersistentVolumeClaim (a StatefulSet's volumeClaimTemplates); "
        "hostPath is for node agents only.",
        storage.host_path_outside_allowlist,
    ),
    Rule(
        "KP011",
        WARN,
        "A hostPath volume mounts a node-agent system path (/var/log, /proc, ...).",
        "Fine for node agents (DaemonSets); mount it readOnly, or accept KP011 with the reason.",
        storage.host_path_system,
    ),
    Rule(
        "KP012",
        ERR,
        "Several pods mount one ReadWriteOnce claim: pods on other nodes cannot attach it.",
        "Use a StatefulSet with volumeClaimTemplates (one claim per replica), one replica, "
        "or a ReadWriteMany volume.",
        storage.shared_single_node_claim,
    ),
    Rule(
        "KP013",
        WARN,
        "Several pods mount one claim whose access mode the input does not show.",
        "Make sure the claim is ReadWriteMany, or use a StatefulSet with volumeClaimTemplates.",
        storage.shared_unknown_claim,
    ),
    Rule(
        "KP014",
        ERR,
        "Replicas keep state on node-local hostPath volumes, each its own copy.",
        "Use a StatefulSet with volumeClaimTemplates and the application's own replication.",
        storage.replicated_node_local_state,
    ),
    Rule(
        "KP015",
        WARN,
        "A workload keeps state on a node-local hostPath volume; it is lost on rescheduling.",
        "Use a PersistentVolumeClaim (or a StatefulSet with volumeClaimTemplates).",
        storage.single_node_local_state,
    ),
    Rule(
        "KP016",
        WARN,
        "One volume is mounted at several paths without subPath: they show the same files.",
        "Give each mount its own subPath, or use separate volumes.",
        storage.volume_mounted_twice,
    ),
    Rule(
        "KP020",
        WARN,
        "A container requests no CPU or memory: the scheduler cannot place it sensibly.",
        "Set resources.requests.cpu and resources.requests.memory from measured use.",
        pods.missing_requests,
    ),
    Rule(
        "KP021",
        WARN,
        "A container has no memory limit: one leak can push the node out of memory.",
        "Set resources.limits.memory (for databases, equal to the request).",
        pods.missing_memory_limit,
    ),
    Rule(
        "KP022",
        WARN,
        "A container has no readinessProbe: traffic reaches it before it is ready.",
        "Add a readinessProbe that checks the service answers (TCP, HTTP or exec).",
        pods.missing_readiness,
    ),
    Rule(
        "KP023",
        WARN,
        "A container has no livenessProbe: a hung process is never restarted.",
        "Add a livenessProbe, gentler than the readiness probe (longer period, more failures).",
        pods.missing_liveness,
    ),
    Rule(
        "KP030",
        WARN,
        "An image has no tag: the version run depends on when each node pulled it.",
        "Pin a version tag (or a digest), and mirror it for air-gapped sites.",
        pods.image_without_tag,
    ),
    Rule(
        "KP031",
        WARN,
        "An image uses the tag 'latest'.",
        "Pin a version tag (or a digest).",
        pods.image_latest,
    ),
    Rule(
        "KP032",
        WARN,
        "imagePullPolicy is Always: pods cannot start where the registry is unreachable.",
        "Use IfNotPresent with pinned tags, and preload images on air-gapped nodes.",
        pods.pull_always,
    ),
    Rule(
        "KP040",
        ERR,
        "A StatefulSet names no serviceName.",
        "Create a headless Service (clusterIP: None) and set spec.serviceName to it.",
        topology.statefulset_without_service_name,
    ),
    Rule(
        "KP041",
        WARN,
        "A StatefulSet's serviceName names no Service in the input.",
        "Add the headless Service to the manifests applied with the StatefulSet.",
        topology.statefulset_service_missing,
    ),
    Rule(
        "KP042",
        ERR,
        "A StatefulSet's serviceName names a Service that is not headless.",
        "Set clusterIP: None on that Service (or add a separate headless Service).",
        topology.statefulset_service_not_headless,
    ),
    Rule(
        "KP050",
        WARN,
        "Replicas have no PodDisruptionBudget: a drain may stop all at once.",
        "Add a PodDisruptionBudget selecting the pods, e.g. maxUnavailable: 1.",
        topology.without_disruption_budget,
    ),
    Rule(
        "KP051",
        WARN,
        "Replicas have no podAntiAffinity or topologySpreadConstraints.",
        "Spread them: topologySpreadConstraints on kubernetes.io/hostname, or podAntiAffinity.",
        topology.without_spreading,
    ),
    Rule(
        "KP060",
        INFO,
        "A claim names no storageClassName and relies on the cluster's default.",
        "Name the StorageClass (on-premises: the local or replicated class you provision).",
        storage.claim_without_storage_class,
    ),
    Rule(
        "KP070",
        WARN,
        "A NodePort Service exposes a component that only other pods use.",
        "Use a ClusterIP Service; expose only the entry point (Ingress, or a NodePort with a reason).",
        topology.internal_nodeport,
    ),
    Rule(
        "KP080",
        WARN,
        "A container is privileged.",
        "Drop privileged; add only the capabilities needed, or accept KP080 with the reason.",
        security.privileged,
    ),
    Rule(
        "KP081",
        WARN,
        "A container adds Linux capabilities.",
        "Add only what the program needs, and accept KP081 with the reason.",
        security.added_capabilities,
    ),
    Rule(
        "KP082",
        WARN,
        "Pods share the node's network, PID or IPC namespace.",
        "Remove hostNetwork/hostPID/hostIPC, or accept KP082 with the reason.",
        security.host_namespaces,
    ),
    Rule(
        "KP090",
        WARN,
        "A kubeprem.io/accept entry has no reason or names an unknown rule.",
        "Write each entry as '<rule-id>: <reason>'.",
        _accept_problems,
    ),
)

RULES_BY_ID = {r.id: r for r in RULES}

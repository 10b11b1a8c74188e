"""kube-scheduler on each ``control-plane`` machine, configured by file.

Called by the render command and the plan. Kubeconfig, leader election and
profiling live in a KubeSchedulerConfiguration (its API version from the
version table); flags carry only what the file cannot: the delegated
authentication/authorization kubeconfigs and the secure serving settings.
The HTTPS endpoint (10259: /healthz, /metrics) listens on the machine's
address with a serving certificate of the cluster CA naming that address, so
Prometheus can scrape and verify it; the node firewall opens the port to the
node subnet, the pods and ``firewall.monitoring_networks`` only.

Kubernetes 1.20 also serves plain-HTTP healthz/metrics (port 10251), and
with ``--config`` it ignores ``--port`` and rejects port 0 in the file, so
``--port=0`` would only look safe; the file binds that port to loopback
instead (``Features.scheduler_insecure_bind``).
"""

from __future__ import annotations

from typing import Any

from kubeprem.components import paths
from kubeprem.components.base import File, HostContext, Rendered
from kubeprem.components.rbac import to_yaml
from kubeprem.components.systemd import flags, unit
from kubeprem.components.versions import features
from kubeprem.site.model import Site

SERVICE = "kube-scheduler.service"


def config(site: Site) -> dict[str, Any]:
    feats = features(site)
    cfg: dict[str, Any] = {
        "apiVersion": feats.scheduler_config_api,
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": paths.SCHEDULER_CONF},
        "leaderElection": {"leaderElect": True},
        "enableProfiling": False,
    }
    if feats.scheduler_insecure_bind is not None:
        cfg["healthzBindAddress"] = feats.scheduler_insecure_bind
        cfg["metricsBindAddress"] = feats.scheduler_insecure_bind
    return cfg


def argv(ctx: HostContext) -> list[str]:
    pairs: dict[str, str | int | bool | None] = {
        "config": paths.SCHEDULER_CONFIG,
        "authentication-kubeconfig": paths.SCHEDULER_CONF,
        "authorization-kubeconfig": paths.SCHEDULER_CONF,
        "bind-address": str(ctx.machine.address),
        "tls-cert-file": paths.SCHEDULER_SERVING_CRT,
        "tls-private-key-file": paths.SCHEDULER_SERVING_KEY,
    }
    return [f"{paths.BIN_DIR}/kube-scheduler", *flags(pairs)]


def render(ctx: HostContext) -> Rendered:
    path, text = unit(
        SERVICE,
        "Kubernetes scheduler",
        argv(ctx),
        documentation="https://kubernetes.io/docs/reference/command-line-tools-reference/kube-scheduler/",
    )
    return Rendered(
        component="kube-scheduler",
        files=(
            File.text(paths.SCHEDULER_CONFIG, to_yaml(config(ctx.site))),
            File.text(path, text),
        ),
        services=(SERVICE,),
    )

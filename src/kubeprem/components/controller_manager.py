"""kube-controller-manager on each ``control-plane`` machine.

Called by the render command and the plan. One instance is active at a time
(leader election); it signs kubelet CSRs with the cluster CA, issues
service-account tokens with the service-account key. Its own HTTPS endpoint
(10257: /healthz, and /metrics for Prometheus, authorized by delegated RBAC)
listens on the machine's address with a serving certificate of the cluster CA
naming that address, so a scrape can verify it; the node firewall opens the
port to the node subnet, the pods and ``firewall.monitoring_networks`` only.

Pod CIDRs are not allocated here: each worker's CNI bridge and every
machine's routes use the site's fixed allocation (``site.pod_cidrs``), and
the controller-manager's allocator hands out ranges in registration order,
which can disagree. Apply sets each Node's ``spec.podCIDR`` from the site
right after the kubelet registers (allowed once, while it is empty).
"""

from __future__ import annotations

from kubeprem.components import paths
from kubeprem.components.base import File, HostContext, Rendered
from kubeprem.components.systemd import flags, unit
from kubeprem.components.versions import features

SERVICE = "kube-controller-manager.service"


def argv(ctx: HostContext) -> list[str]:
    site = ctx.site
    feats = features(site)
    net = site.network
    pairs: dict[str, str | int | bool | None] = {
        "kubeconfig": paths.CONTROLLER_MANAGER_CONF,
        "authentication-kubeconfig": paths.CONTROLLER_MANAGER_CONF,
        "authorization-kubeconfig": paths.CONTROLLER_MANAGER_CONF,
        "client-ca-file": paths.CA_CRT,
        "requestheader-client-ca-file": paths.FRONT_PROXY_CA_CRT,
        "bind-address": str(ctx.machine.address),
        "tls-cert-file": paths.CONTROLLER_MANAGER_SERVING_CRT,
        "tls-private-key-file": paths.CONTROLLER_MANAGER_SERVING_KEY,
        # 1.20 serves plain HTTP on 10252 unless told not to
        "port": 0 if feats.controller_manager_port_flag else None,
        "profiling": False,
        "leader-elect": True,
        "cluster-name": site.cluster.name,
        "cluster-signing-cert-file": paths.CA_CRT,
        "cluster-signing-key-file": paths.CA_KEY,
        "root-ca-file": paths.CA_CRT,
        "service-account-private-key-file": paths.SA_KEY,
        "use-service-account-credentials": True,
        "service-cluster-ip-range": str(net.service_cidr),
        "allocate-node-cidrs": False,
        "cluster-cidr": str(net.pod_cidr),
    }
    return [f"{paths.BIN_DIR}/kube-controller-manager", *flags(pairs)]


def render(ctx: HostContext) -> Rendered:
    path, text = unit(
        SERVICE,
        "Kubernetes controller manager",
        argv(ctx),
        documentation="https://kubernetes.io/docs/reference/command-line-tools-reference/kube-controller-manager/",
    )
    return Rendered(
        component="kube-controller-manager", files=(File.text(path, text),), services=(SERVICE,)
    )

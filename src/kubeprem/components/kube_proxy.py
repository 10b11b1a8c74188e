"""kube-proxy on workers: its KubeProxyConfiguration and systemd unit.

Called for machines with the ``worker`` role (others get an empty result).
iptables mode; ``clusterCIDR`` is the whole pod CIDR so traffic from
outside it to Service addresses is masqueraded. The node name matches the
kubelet's (``hostnameOverride``), so kube-proxy finds its Node. Its metrics
(plain HTTP, metrics only) listen on the node's address, port 10249
(``metricsBindAddress``, a v1alpha1 field on every supported version), for
Prometheus; the node firewall opens that port to the node subnet, the pods
and ``firewall.monitoring_networks`` only.

In a container (the lab's nspawn machines) kube-proxy cannot write the
global conntrack sysctls and exits (LAB-NOTES.md); zero values tell it to
leave them alone. Real servers keep kube-proxy's defaults.
"""

from __future__ import annotations

from kubeprem.components.base import File, HostContext, Rendered
from kubeprem.components.paths import BIN_DIR, KUBE_PROXY_CONF, KUBE_PROXY_CONFIG
from kubeprem.components.systemd import flags, unit
from kubeprem.components.versions import features

COMPONENT = "kube-proxy"
METRICS_PORT = 10249
SERVICE = "kube-proxy.service"


def config_yaml(ctx: HostContext) -> str:
    lines = [
        "# Rendered by kubeprem; changes here are overwritten.",
        f"apiVersion: {features(ctx.site).kube_proxy_config_api}",
        "kind: KubeProxyConfiguration",
        "clientConnection:",
        f"  kubeconfig: {KUBE_PROXY_CONF}",
        f"clusterCIDR: {ctx.site.network.pod_cidr}",
        f"hostnameOverride: {ctx.machine.name}",
        f"metricsBindAddress: {ctx.machine.address}:{METRICS_PORT}",
        "mode: iptables",
    ]
    if ctx.options.in_container:
        lines += [
            "conntrack:",
            "  maxPerCore: 0",
            "  tcpCloseWaitTimeout: 0s",
            "  tcpEstablishedTimeout: 0s",
        ]
    lines.append("")
    return "\n".join(lines)


def unit_file(ctx: HostContext) -> tuple[str, str]:
    return unit(
        SERVICE,
        "Kubernetes kube-proxy",
        [f"{BIN_DIR}/kube-proxy", *flags({"config": KUBE_PROXY_CONFIG, "v": 2})],
        documentation="https://kubernetes.io/docs/reference/command-line-tools-reference/kube-proxy/",
    )


def render(ctx: HostContext) -> Rendered:
    if not ctx.machine.has("worker"):
        return Rendered(COMPONENT, ())
    unit_path, unit_text = unit_file(ctx)
    return Rendered(
        COMPONENT,
        (File.text(KUBE_PROXY_CONFIG, config_yaml(ctx)), File.text(unit_path, unit_text)),
        services=(SERVICE,),
    )

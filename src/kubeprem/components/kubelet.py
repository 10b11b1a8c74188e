"""The kubelet on workers: its KubeletConfiguration and systemd unit.

Called for machines with the ``worker`` role (others get an empty result).
Certificates and the kubeconfig it names come from the PKI layer; this
module only points at their paths.

- Authentication: no anonymous requests, client certificates signed by the
  cluster CA, bearer tokens checked by webhook; authorization by webhook
  (SubjectAccessReview), so the API server's kubelet-client certificate
  needs the RBAC the control-plane renderers ship.
- Serving certificate from kubeprem (``tlsCertFile``), and
  ``rotateCertificates: false``: kubeprem renews certificates, not the
  kubelet.
- Real servers: ``protectKernelDefaults: true`` (node_os renders the
  sysctls it checks) and ``failSwapOn: true``. In a container (the lab)
  both are false: the kernel settings are the host's, and the host may
  have swap.
- Runtime endpoint: in the configuration where the version supports it,
  flags otherwise (``Features.kubelet_endpoint_in_config``); 1.20 also needs
  the dockershim-era ``--container-runtime=remote`` and
  ``--network-plugin=cni`` (``Features.kubelet_dockershim_flags``). Flags
  checked against the 1.20 source (cmd/kubelet/app/options,
  pkg/kubelet/config/flags.go).
"""

from __future__ import annotations

from kubeprem.components import containerd
from kubeprem.components.base import File, HostContext, Rendered
from kubeprem.components.paths import (
    BIN_DIR,
    CA_CRT,
    KUBELET_CONF,
    KUBELET_CONFIG,
    KUBELET_SERVING_CRT,
    KUBELET_SERVING_KEY,
)
from kubeprem.components.systemd import flags, unit
from kubeprem.components.versions import features

COMPONENT = "kubelet"
SERVICE = "kubelet.service"
CONFIG_API = "kubelet.config.k8s.io/v1beta1"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def protect_kernel_defaults(ctx: HostContext) -> bool:
    return not ctx.options.in_container


def config_yaml(ctx: HostContext) -> str:
    site = ctx.site
    real_server = not ctx.options.in_container
    lines = [
        "# Rendered by kubeprem; changes here are overwritten.",
        f"apiVersion: {CONFIG_API}",
        "kind: KubeletConfiguration",
        "authentication:",
        "  anonymous:",
        "    enabled: false",
        "  webhook:",
        "    enabled: true",
        "  x509:",
        f"    clientCAFile: {CA_CRT}",
        "authorization:",
        "  mode: Webhook",
        f"cgroupDriver: {containerd.cgroup_driver(ctx.options)}",
        f"clusterDomain: {site.cluster.domain}",
        "clusterDNS:",
        f"  - {site.network.cluster_dns}",
    ]
    if features(site).kubelet_endpoint_in_config:
        lines.append(f"containerRuntimeEndpoint: {containerd.ENDPOINT}")
    if features(site).kubelet_fail_cgroup_v1 and ctx.options.cgroup_v1:
        # the kubelet refuses cgroup v1 from 1.35 unless told otherwise (it
        # then warns); rendered only on machines whose facts show v1
        lines.append("failCgroupV1: false")
    lines += [
        f"failSwapOn: {_bool(real_server)}",
        f"protectKernelDefaults: {_bool(protect_kernel_defaults(ctx))}",
        "readOnlyPort: 0",
        "rotateCertificates: false",
        "serverTLSBootstrap: false",
        f"tlsCertFile: {KUBELET_SERVING_CRT}",
        "tlsMinVersion: VersionTLS12",
        f"tlsPrivateKeyFile: {KUBELET_SERVING_KEY}",
        "",
    ]
    return "\n".join(lines)


def argv(ctx: HostContext) -> list[str]:
    feats = features(ctx.site)
    args = [f"{BIN_DIR}/kubelet"]
    args += flags({"config": KUBELET_CONFIG, "kubeconfig": KUBELET_CONF})
    if feats.kubelet_dockershim_flags:
        args += flags({"container-runtime": "remote"})
    if not feats.kubelet_endpoint_in_config:
        args += flags({"container-runtime-endpoint": containerd.ENDPOINT})
    if feats.kubelet_dockershim_flags:
        args += flags({"network-plugin": "cni"})
    # The node registers under its site name and address, whatever the
    # machine's hostname and default route say.
    args += flags(
        {
            "hostname-override": ctx.machine.name,
            "node-ip": str(ctx.machine.address),
            "v": 2,
        }
    )
    return args


def unit_file(ctx: HostContext) -> tuple[str, str]:
    return unit(
        SERVICE,
        "Kubernetes kubelet",
        argv(ctx),
        documentation="https://kubernetes.io/docs/reference/command-line-tools-reference/kubelet/",
        after=(containerd.SERVICE, "network-online.target"),
        wants=("network-online.target",),
        requires=(containerd.SERVICE,),
    )


def render(ctx: HostContext) -> Rendered:
    if not ctx.machine.has("worker"):
        return Rendered(COMPONENT, ())
    unit_path, unit_text = unit_file(ctx)
    return Rendered(
        COMPONENT,
        (File.text(KUBELET_CONFIG, config_yaml(ctx)), File.text(unit_path, unit_text)),
        services=(SERVICE,),
    )

"""Kernel modules and sysctls a worker needs, as /etc/modules-load.d and /etc/sysctl.d files.

Called for machines with the ``worker`` role (others get an empty result).

- ``overlay`` backs containerd's overlayfs snapshotter; ``br_netfilter``
  makes bridged pod traffic pass through iptables, which kube-proxy's
  Service rules need (``net.bridge.bridge-nf-call-iptables``).
- ``net.ipv4.ip_forward``: the node routes between its pod bridge and the
  other nodes.
- ``KUBELET_KERNEL_DEFAULTS``: the values the kubelet checks when
  ``protectKernelDefaults`` is true (it then refuses to start if any
  differs, instead of changing them). Taken from the kubelet's own list
  (pkg/kubelet/cm/container_manager_linux.go, setupKernelTunables), which
  has six entries, not only overcommit and panic.

In a container (the lab's nspawn machines) only the per-network-namespace
sysctls are rendered. Kernel modules cannot be loaded from inside (the lab
host loads overlay and br_netfilter), and the kernel defaults are global:
writing them would change the host's kernel. There the kubelet runs with
``protectKernelDefaults: false`` and sets what it needs itself.

``services``: systemd's own static units, restarted so that changed files
apply now and not only at the next boot (modules before sysctls, as
systemd-sysctl.service orders itself after systemd-modules-load.service).
"""

from __future__ import annotations

from kubeprem.components.base import File, HostContext, Rendered

COMPONENT = "node-os"
MODULES_FILE = "/etc/modules-load.d/kubeprem.conf"
SYSCTL_FILE = "/etc/sysctl.d/90-kubeprem.conf"
MODULES = ("overlay", "br_netfilter")

NETWORK_SYSCTLS: dict[str, str] = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
}
KUBELET_KERNEL_DEFAULTS: dict[str, str] = {
    "vm.overcommit_memory": "1",
    "vm.panic_on_oom": "0",
    "kernel.panic": "10",
    "kernel.panic_on_oops": "1",
    "kernel.keys.root_maxkeys": "1000000",
    "kernel.keys.root_maxbytes": "25000000",
}


def sysctls(ctx: HostContext) -> dict[str, str]:
    if ctx.options.in_container:
        return dict(NETWORK_SYSCTLS)
    return {**NETWORK_SYSCTLS, **KUBELET_KERNEL_DEFAULTS}


def render(ctx: HostContext) -> Rendered:
    if not ctx.machine.has("worker"):
        return Rendered(COMPONENT, ())
    header = "# Rendered by kubeprem; changes here are overwritten.\n"
    files = []
    services = []
    if not ctx.options.in_container:
        files.append(File.text(MODULES_FILE, header + "".join(f"{m}\n" for m in MODULES)))
        services.append("systemd-modules-load.service")
    body = "".join(f"{key} = {value}\n" for key, value in sysctls(ctx).items())
    files.append(File.text(SYSCTL_FILE, header + body))
    services.append("systemd-sysctl.service")
    return Rendered(COMPONENT, tuple(files), services=tuple(services))

"""CNI configuration on workers: a bridge network for the node's pod CIDR.

Called for machines with the ``worker`` role (others get an empty result).
containerd's CRI plugin reads the first file of ``CNI_CONF_DIR`` in name
order as the pod network (``10-bridge.conflist``) and sets up each pod's
loopback interface itself; ``99-loopback.conf`` is kept for tools that
expect it. Pods get addresses from this node's own subnet
(``site.pod_cidrs``); reaching other nodes' subnets is the job of the
static routes (``kubeprem.components.routes``).

``hairpinMode`` lets a pod reach itself through a Service address (the
kube-proxy iptables DNAT sends the packet back out of the same bridge port).
The CNI spec version comes from the version table: containerd 1.6.20 (built
with libcni 1.1.2) and containernetworking-plugins 1.1.1 both support 1.0.0.

These are setup files: no service restarts when they change; containerd
rereads the directory for new pods.
"""

from __future__ import annotations

import json
from typing import Any

from kubeprem.components.base import File, HostContext, Rendered
from kubeprem.components.paths import CNI_CONF_DIR
from kubeprem.components.versions import features

COMPONENT = "cni"
BRIDGE = "cnio0"
NETWORK_NAME = "kubeprem"
BRIDGE_CONFLIST = f"{CNI_CONF_DIR}/10-bridge.conflist"
LOOPBACK_CONF = f"{CNI_CONF_DIR}/99-loopback.conf"


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2) + "\n"


def bridge_conflist(ctx: HostContext) -> dict[str, Any]:
    subnet = ctx.site.pod_cidrs[ctx.machine.name]
    return {
        "cniVersion": features(ctx.site).cni_spec_version,
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(subnet)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def loopback_conf(ctx: HostContext) -> dict[str, Any]:
    return {"cniVersion": features(ctx.site).cni_spec_version, "name": "lo", "type": "loopback"}


def render(ctx: HostContext) -> Rendered:
    if not ctx.machine.has("worker"):
        return Rendered(COMPONENT, ())
    return Rendered(
        COMPONENT,
        (
            File.text(BRIDGE_CONFLIST, _json(bridge_conflist(ctx))),
            File.text(LOOPBACK_CONF, _json(loopback_conf(ctx))),
        ),
    )

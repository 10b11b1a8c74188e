"""Kubeconfig files with embedded certificates: pure text renderers.

Called by ``kubeprem.pki.store`` to build the bundle's kubeconfigs (admin,
controller-manager, scheduler, kube-proxy, one per kubelet) and by any
command that hands a kubeconfig to the operator. Values are written as
JSON strings, which are valid YAML scalars, so names with colons
(``system:node:worker-0``) need no further quoting.
"""

from __future__ import annotations

import base64
import json

from kubeprem.sensitive import Sensitive


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render_kubeconfig(
    *,
    cluster: str,
    server: str,
    ca_pem: bytes,
    user: str,
    cert_pem: bytes,
    key_pem: Sensitive[bytes],
) -> Sensitive[str]:
    """A kubeconfig with one cluster, one user and one current context.

    The result holds the client's private key, so it is ``Sensitive``.
    """
    context = f"{user}@{cluster}"
    q = json.dumps
    text = (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- cluster:\n"
        f"    certificate-authority-data: {_b64(ca_pem)}\n"
        f"    server: {q(server)}\n"
        f"  name: {q(cluster)}\n"
        "contexts:\n"
        "- context:\n"
        f"    cluster: {q(cluster)}\n"
        f"    user: {q(user)}\n"
        f"  name: {q(context)}\n"
        f"current-context: {q(context)}\n"
        "preferences: {}\n"
        "users:\n"
        f"- name: {q(user)}\n"
        "  user:\n"
        f"    client-certificate-data: {_b64(cert_pem)}\n"
        f"    client-key-data: {_b64(key_pem.reveal())}\n"
    )
    return Sensitive(text)


__all__ = ["render_kubeconfig"]

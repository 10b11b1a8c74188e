"""The PKI files each machine needs, in kubeadm's layout, chosen by its roles.

Pure: ``pki_files(ctx, bundle)`` from one machine and the ``PkiBundle``.
Called by the render command and the plan. Control-plane machines get the
cluster CA key (kube-controller-manager signs CSRs with it); no machine
ever gets the etcd or front-proxy CA key. Keys, kubeconfigs and the
encryption config are mode 0600 and marked secret.
"""

from __future__ import annotations

from kubeprem.components import paths
from kubeprem.components.base import File, HostContext, Rendered
from kubeprem.pki.bundle import ADMIN, CONTROLLER_MANAGER, KUBE_PROXY, SCHEDULER, CertKey, PkiBundle
from kubeprem.sensitive import Sensitive

COMPONENT = "pki"


def _cert(path: str, pem: bytes) -> File:
    return File(path, pem, 0o644)


def _secret(path: str, value: Sensitive[bytes] | Sensitive[str]) -> File:
    raw = value.reveal()
    return File(path, raw.encode() if isinstance(raw, str) else raw, 0o600, secret=True)


def _pair(crt: str, key: str, ck: CertKey) -> list[File]:
    return [_cert(crt, ck.cert_pem), _secret(key, ck.key_pem)]


def pki_files(ctx: HostContext, bundle: PkiBundle) -> Rendered:
    m = ctx.machine
    files: dict[str, File] = {}

    def add(*new: File) -> None:
        for f in new:
            files[f.path] = f  # a machine with several roles gets each file once

    if m.has("control-plane"):
        add(
            _cert(paths.CA_CRT, bundle.cluster_ca.cert_pem),
            _secret(paths.CA_KEY, bundle.cluster_ca.key_pem),
            *_pair(paths.APISERVER_CRT, paths.APISERVER_KEY, bundle.cert("apiserver")),
            *_pair(
                paths.APISERVER_KUBELET_CLIENT_CRT,
                paths.APISERVER_KUBELET_CLIENT_KEY,
                bundle.cert("apiserver-kubelet-client"),
            ),
            *_pair(
                paths.APISERVER_ETCD_CLIENT_CRT,
                paths.APISERVER_ETCD_CLIENT_KEY,
                bundle.cert("apiserver-etcd-client"),
            ),
            _cert(paths.FRONT_PROXY_CA_CRT, bundle.front_proxy_ca.cert_pem),
            *_pair(
                paths.FRONT_PROXY_CLIENT_CRT,
                paths.FRONT_PROXY_CLIENT_KEY,
                bundle.cert("front-proxy-client"),
            ),
            _secret(paths.SA_KEY, bundle.sa_key),
            _cert(paths.SA_PUB, bundle.sa_pub),
            _cert(paths.ETCD_CA_CRT, bundle.etcd_ca.cert_pem),
            _secret(paths.ADMIN_CONF, bundle.kubeconfig(ADMIN)),
            _secret(paths.CONTROLLER_MANAGER_CONF, bundle.kubeconfig(CONTROLLER_MANAGER)),
            _secret(paths.SCHEDULER_CONF, bundle.kubeconfig(SCHEDULER)),
            *_pair(
                paths.CONTROLLER_MANAGER_SERVING_CRT,
                paths.CONTROLLER_MANAGER_SERVING_KEY,
                bundle.controller_manager_serving(m),
            ),
            *_pair(
                paths.SCHEDULER_SERVING_CRT,
                paths.SCHEDULER_SERVING_KEY,
                bundle.scheduler_serving(m),
            ),
        )
        encryption = bundle.encryption_config
        if encryption is not None:
            add(_secret(paths.ENCRYPTION_CONFIG, encryption))
    if m.has("etcd"):
        add(
            _cert(paths.ETCD_CA_CRT, bundle.etcd_ca.cert_pem),
            *_pair(paths.ETCD_SERVER_CRT, paths.ETCD_SERVER_KEY, bundle.etcd_server(m)),
            *_pair(paths.ETCD_PEER_CRT, paths.ETCD_PEER_KEY, bundle.etcd_peer(m)),
            *_pair(
                paths.ETCD_HEALTHCHECK_CLIENT_CRT,
                paths.ETCD_HEALTHCHECK_CLIENT_KEY,
                bundle.cert("etcd/healthcheck-client"),
            ),
        )
    if m.has("worker"):
        add(
            _cert(paths.CA_CRT, bundle.cluster_ca.cert_pem),
            _secret(paths.KUBELET_CONF, bundle.kubelet_kubeconfig(m)),
            _secret(paths.KUBE_PROXY_CONF, bundle.kubeconfig(KUBE_PROXY)),
            *_pair(paths.KUBELET_SERVING_CRT, paths.KUBELET_SERVING_KEY, bundle.kubelet_serving(m)),
            *_pair(paths.KUBELET_CLIENT_CRT, paths.KUBELET_CLIENT_KEY, bundle.kubelet_client(m)),
        )
    if m.has("lb"):
        add(_secret(paths.HAPROXY_HEALTHCHECK_PEM, bundle.cert("lb-healthcheck").combined_pem()))
    return Rendered(COMPONENT, tuple(sorted(files.values(), key=lambda f: f.path)))


__all__ = ["COMPONENT", "pki_files"]

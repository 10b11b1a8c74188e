"""The PKI as one value that renderers read: ``PkiBundle``.

Built by ``kubeprem.pki.store`` (from the state folder, or in memory by
``issue_pki`` for tests and goldens) and passed to pure renderers such as
``kubeprem.components.pki_files``. Private keys, kubeconfigs and the
encryption config are ``Sensitive``; certificates and public keys are not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from cryptography import x509

from kubeprem.pki.certs import (
    CLUSTER_CA,
    ETCD_CA,
    FRONT_PROXY_CA,
    controller_manager_serving_id,
    etcd_peer_id,
    etcd_server_id,
    kubelet_client_id,
    kubelet_serving_id,
    scheduler_serving_id,
)
from kubeprem.pki.encryption import EncryptionConfig
from kubeprem.sensitive import Sensitive
from kubeprem.site.model import Machine


@dataclass(frozen=True, eq=False)
class CertKey:
    """A certificate (PEM) and its private key (PEM, Sensitive)."""

    cert_pem: bytes
    key_pem: Sensitive[bytes]

    @cached_property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def combined_pem(self) -> Sensitive[bytes]:
        """Certificate then key in one PEM, as HAProxy's ``crt`` wants."""
        return Sensitive(self.cert_pem + self.key_pem.reveal())


# Kubeconfig names in ``PkiBundle.kubeconfigs``.
ADMIN = "admin"
CONTROLLER_MANAGER = "controller-manager"
SCHEDULER = "scheduler"
KUBE_PROXY = "kube-proxy"


def kubelet_kubeconfig_name(machine: Machine | str) -> str:
    name = machine if isinstance(machine, str) else machine.name
    return f"kubelet-{name}"


@dataclass(frozen=True, eq=False)
class PkiBundle:
    """Everything the cluster's machines need from the PKI.

    ``cas`` and ``certs`` are keyed by their id in the state folder
    (``ca``, ``etcd/ca``, ``front-proxy-ca``; ``apiserver``,
    ``etcd/controller-0/server``, ``kubelet/worker-0/kubelet-client``, ...;
    see ``kubeprem.pki.certs.required_certs``). ``kubeconfigs`` is keyed
    by ``admin``, ``controller-manager``, ``scheduler``, ``kube-proxy`` and
    ``kubelet-<machine>``. ``encryption`` is None when the site turns
    encryption at rest off.
    """

    cas: Mapping[str, CertKey]
    certs: Mapping[str, CertKey]
    sa_key: Sensitive[bytes]
    sa_pub: bytes
    kubeconfigs: Mapping[str, Sensitive[str]]
    encryption: EncryptionConfig | None = None

    # -- CAs --------------------------------------------------------------

    @property
    def cluster_ca(self) -> CertKey:
        return self.cas[CLUSTER_CA]

    @property
    def etcd_ca(self) -> CertKey:
        return self.cas[ETCD_CA]

    @property
    def front_proxy_ca(self) -> CertKey:
        return self.cas[FRONT_PROXY_CA]

    # -- leaves -----------------------------------------------------------

    def cert(self, cert_id: str) -> CertKey:
        try:
            return self.certs[cert_id]
        except KeyError:
            raise KeyError(f"no certificate {cert_id!r} in the PKI bundle") from None

    def etcd_server(self, machine: Machine) -> CertKey:
        return self.cert(etcd_server_id(machine))

    def etcd_peer(self, machine: Machine) -> CertKey:
        return self.cert(etcd_peer_id(machine))

    def kubelet_serving(self, machine: Machine) -> CertKey:
        return self.cert(kubelet_serving_id(machine))

    def kubelet_client(self, machine: Machine) -> CertKey:
        return self.cert(kubelet_client_id(machine))

    def controller_manager_serving(self, machine: Machine) -> CertKey:
        return self.cert(controller_manager_serving_id(machine))

    def scheduler_serving(self, machine: Machine) -> CertKey:
        return self.cert(scheduler_serving_id(machine))

    # -- kubeconfigs and encryption -----------------------------------------

    def kubeconfig(self, name: str) -> Sensitive[str]:
        try:
            return self.kubeconfigs[name]
        except KeyError:
            raise KeyError(f"no kubeconfig {name!r} in the PKI bundle") from None

    def kubelet_kubeconfig(self, machine: Machine) -> Sensitive[str]:
        return self.kubeconfig(kubelet_kubeconfig_name(machine))

    @property
    def encryption_config(self) -> Sensitive[str] | None:
        """The rendered EncryptionConfiguration, or None when encryption is off."""
        return None if self.encryption is None else self.encryption.render()


__all__ = [
    "ADMIN",
    "CONTROLLER_MANAGER",
    "KUBE_PROXY",
    "SCHEDULER",
    "CertKey",
    "PkiBundle",
    "kubelet_kubeconfig_name",
]

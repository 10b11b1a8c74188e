"""The cluster's certificate table and the pure functions that issue certificates.

``required_certs(site)`` says which certificates a site needs, as data:
subject, issuing CA, server/client use and SANs, following kubeadm's table
(kubernetes.io "PKI certificates and requirements", kubeadm's certlist).
``issue_ca``/``issue_leaf`` make them from a key and an injected ``now``;
``mismatch`` says why a stored certificate no longer fits its entry. The
store (``kubeprem.pki.store``) decides what to keep and what to reissue.

Deliberate differences from kubeadm:

- apiserver-kubelet-client has no Organization. kubeadm before 1.29 put it
  in ``system:masters``, a group the API server authorizes for everything
  and that RBAC cannot revoke; kubeadm 1.29+ uses ``kubeadm:cluster-admins``,
  a group that only means something because kubeadm binds it to
  cluster-admin, which kubeprem does not. The API server only needs the
  kubelet API, which the cluster RBAC grants to this certificate's CN
  (``kube-apiserver-kubelet-client``) on every version.
- apiserver-etcd-client and etcd healthcheck-client have no Organization
  either: etcd ignores it (kubeadm dropped ``system:masters`` there in 1.29).
- Leaves carry digitalSignature only. keyEncipherment means RSA key
  transport; RFC 5480 forbids it on EC keys, so it is set only for RSA keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from inspect import signature
from ipaddress import IPv4Address, IPv6Address, ip_address

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeprem.site.model import Machine, Site

CA_VALIDITY = timedelta(days=3650)
LEAF_VALIDITY = timedelta(days=365)
# Certificates start a little in the past: a machine whose clock is a few
# minutes behind the operator's would otherwise reject them as not yet valid.
BACKDATE = timedelta(minutes=5)

CLUSTER_CA = "ca"
ETCD_CA = "etcd/ca"
FRONT_PROXY_CA = "front-proxy-ca"

IPAddress = IPv4Address | IPv6Address
# The key types kubeprem issues with (ECDSA) or accepts from an existing CA (RSA).
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

# RFC 6979 signatures make issuance reproducible from a seeded key source
# (golden files); older cryptography releases lack the option.
_DETERMINISTIC = "ecdsa_deterministic" in signature(x509.CertificateBuilder.sign).parameters


@dataclass(frozen=True)
class CASpec:
    id: str  # path stem in the state folder: ca, etcd/ca, front-proxy-ca
    cn: str
    title: str


CAS: tuple[CASpec, ...] = (
    CASpec(CLUSTER_CA, "kubernetes", "cluster CA"),
    CASpec(ETCD_CA, "etcd-ca", "etcd CA"),
    CASpec(FRONT_PROXY_CA, "front-proxy-ca", "front-proxy CA"),
)


@dataclass(frozen=True)
class CertSpec:
    """One leaf certificate the site needs."""

    id: str  # path stem in the state folder, e.g. apiserver, etcd/controller-0/server
    ca: str  # the CASpec id that signs it
    cn: str
    orgs: tuple[str, ...] = ()
    server: bool = False
    client: bool = False
    dns: tuple[str, ...] = ()
    ips: tuple[IPAddress, ...] = ()
    title: str = ""

    def subject(self) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in self.orgs]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, self.cn))
        return x509.Name(attrs)

    def usages(self) -> frozenset[x509.ObjectIdentifier]:
        out = set()
        if self.server:
            out.add(ExtendedKeyUsageOID.SERVER_AUTH)
        if self.client:
            out.add(ExtendedKeyUsageOID.CLIENT_AUTH)
        return frozenset(out)


def _uniq(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _uniq_ip(items: Iterable[IPAddress]) -> tuple[IPAddress, ...]:
    return tuple(dict.fromkeys(items))


LOOPBACK_IPS: tuple[IPAddress, ...] = (ip_address("127.0.0.1"), ip_address("::1"))


def etcd_server_id(m: Machine) -> str:
    return f"etcd/{m.name}/server"


def etcd_peer_id(m: Machine) -> str:
    return f"etcd/{m.name}/peer"


def kubelet_serving_id(m: Machine) -> str:
    return f"kubelet/{m.name}/kubelet"


def kubelet_client_id(m: Machine) -> str:
    return f"kubelet/{m.name}/kubelet-client"


def controller_manager_serving_id(m: Machine) -> str:
    return f"kube-controller-manager/{m.name}/serving"


def scheduler_serving_id(m: Machine) -> str:
    return f"kube-scheduler/{m.name}/serving"


def apiserver_sans(site: Site) -> tuple[tuple[str, ...], tuple[IPAddress, ...]]:
    """DNS names and addresses clients may use to reach an API server."""
    domain = site.cluster.domain
    dns = _uniq(
        [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            f"kubernetes.default.svc.{domain}",
            "localhost",
            *(m.name for m in site.controllers),
        ]
    )
    ips = _uniq_ip(
        [
            *(m.address for m in site.controllers),
            site.api.vip,
            site.network.kubernetes_service_ip,
            ip_address("127.0.0.1"),
        ]
    )
    return dns, ips


def required_certs(site: Site) -> tuple[CertSpec, ...]:
    """Every leaf certificate the site needs, in a stable order."""
    out: list[CertSpec] = []
    for m in site.etcd_members:
        names = (m.name, "localhost")
        ips = _uniq_ip([m.address, *LOOPBACK_IPS])
        # kubeadm names etcd's certificates after the member and lets both
        # serve and act as client: etcd uses its server certificate as a
        # client too (etcd issue 9785).
        for cert_id, what in ((etcd_server_id(m), "server"), (etcd_peer_id(m), "peer")):
            out.append(
                CertSpec(
                    cert_id,
                    ETCD_CA,
                    m.name,
                    server=True,
                    client=True,
                    dns=names,
                    ips=ips,
                    title=f"etcd {what} on {m.name}",
                )
            )
    dns, ips = apiserver_sans(site)

    def client(cert_id: str, ca: str, cn: str, title: str, *orgs: str) -> CertSpec:
        return CertSpec(cert_id, ca, cn, orgs, client=True, title=title)

    out += [
        client("etcd/healthcheck-client", ETCD_CA, "kube-etcd-healthcheck-client",
               "etcd health-check client"),
        CertSpec("apiserver", CLUSTER_CA, "kube-apiserver", server=True, dns=dns, ips=ips,
                 title="kube-apiserver serving"),
        client("apiserver-kubelet-client", CLUSTER_CA, "kube-apiserver-kubelet-client",
               "kube-apiserver to kubelets"),
        client("apiserver-etcd-client", ETCD_CA, "kube-apiserver-etcd-client",
               "kube-apiserver to etcd"),
        client("front-proxy-client", FRONT_PROXY_CA, "front-proxy-client",
               "aggregation-layer front proxy"),
        client("controller-manager", CLUSTER_CA, "system:kube-controller-manager",
               "kube-controller-manager"),
        client("scheduler", CLUSTER_CA, "system:kube-scheduler", "kube-scheduler"),
        client("kube-proxy", CLUSTER_CA, "system:kube-proxy", "kube-proxy"),
        client("admin", CLUSTER_CA, "kubernetes-admin", "cluster administrator",
               "system:masters"),
        client("lb-healthcheck", CLUSTER_CA, "kubeprem:lb-healthcheck",
               "HAProxy /readyz checks"),
        client("etcd/prometheus-client", ETCD_CA, "kubeprem:prometheus",
               "Prometheus etcd metrics client"),
    ]  # fmt: skip
    # kube-controller-manager and kube-scheduler serve /healthz and /metrics on
    # the machine's address (10257, 10259) so Prometheus can scrape them; like
    # the kubelets, each presents a certificate of the cluster CA naming its
    # machine, instead of the self-signed one they would make for themselves.
    for m in site.controllers:
        for cert_id, cn in (
            (controller_manager_serving_id(m), "kube-controller-manager"),
            (scheduler_serving_id(m), "kube-scheduler"),
        ):
            out.append(
                CertSpec(
                    cert_id,
                    CLUSTER_CA,
                    cn,
                    server=True,
                    dns=(m.name,),
                    ips=(m.address,),
                    title=f"{cn} serving on {m.name}",
                )
            )
    for m in site.workers:
        node = f"system:node:{m.name}"
        out.append(
            client(
                kubelet_client_id(m),
                CLUSTER_CA,
                node,
                f"kubelet client on {m.name}",
                "system:nodes",
            )
        )
        out.append(
            CertSpec(
                kubelet_serving_id(m),
                CLUSTER_CA,
                node,
                ("system:nodes",),
                server=True,
                dns=(m.name,),
                ips=(m.address,),
                title=f"kubelet serving on {m.name}",
            )
        )
    return tuple(out)


# -- issuance --------------------------------------------------------------


def _sign(builder: x509.CertificateBuilder, key: SigningKey) -> x509.Certificate:
    if _DETERMINISTIC and isinstance(key, ec.EllipticCurvePrivateKey):
        return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    return builder.sign(key, hashes.SHA256())


def issue_ca(spec: CASpec, key: SigningKey, serial: int, now: datetime) -> x509.Certificate:
    """A self-signed CA certificate valid for ``CA_VALIDITY`` from ``now``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.cn)])
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return _sign(builder, key)


def issue_leaf(
    spec: CertSpec,
    public: PublicKey,
    ca_cert: x509.Certificate,
    ca_key: SigningKey,
    serial: int,
    now: datetime,
) -> x509.Certificate:
    """A leaf certificate valid for ``LEAF_VALIDITY`` from ``now``, never past its CA."""
    not_after = min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject())
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=isinstance(public, rsa.RSAPublicKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(sorted(spec.usages(), key=str)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns]
    sans += [x509.IPAddress(ip) for ip in spec.ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return _sign(builder, ca_key)


# -- reading certificates back ---------------------------------------------


def cert_sans(cert: x509.Certificate) -> tuple[list[str], list[IPAddress]]:
    """The DNS names and IP addresses a certificate names, in its order."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    ips = [ip for ip in ext.get_values_for_type(x509.IPAddress) if isinstance(ip, IPAddress)]
    return ext.get_values_for_type(x509.DNSName), ips


def cert_usages(cert: x509.Certificate) -> frozenset[x509.ObjectIdentifier]:
    try:
        return frozenset(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return frozenset()


def mismatch(spec: CertSpec, cert: x509.Certificate, ca_cert: x509.Certificate) -> str | None:
    """Why ``cert`` no longer fits ``spec`` under ``ca_cert``, or None when it does."""
    if cert.subject != spec.subject():
        return f"subject {cert.subject.rfc4514_string()} != {spec.subject().rfc4514_string()}"
    if cert.issuer != ca_cert.subject:
        return "issued by another CA"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by the current CA"
    dns, ips = cert_sans(cert)
    if set(dns) != set(spec.dns) or set(ips) != set(spec.ips):
        gone = sorted(set(dns) - set(spec.dns)) + sorted(map(str, set(ips) - set(spec.ips)))
        new = sorted(set(spec.dns) - set(dns)) + sorted(map(str, set(spec.ips) - set(ips)))
        parts = []
        if new:
            parts.append("needs " + ", ".join(new))
        if gone:
            parts.append("drops " + ", ".join(gone))
        return "SANs changed: " + "; ".join(parts)
    if cert_usages(cert) != spec.usages():
        return "key usages changed"
    return None


__all__ = [
    "BACKDATE",
    "CAS",
    "CA_VALIDITY",
    "CLUSTER_CA",
    "ETCD_CA",
    "FRONT_PROXY_CA",
    "LEAF_VALIDITY",
    "CASpec",
    "CertSpec",
    "PublicKey",
    "SigningKey",
    "apiserver_sans",
    "cert_sans",
    "cert_usages",
    "etcd_peer_id",
    "etcd_server_id",
    "issue_ca",
    "issue_leaf",
    "kubelet_client_id",
    "kubelet_serving_id",
    "mismatch",
    "required_certs",
]

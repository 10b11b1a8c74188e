"""The certificate table: subjects, SANs, key usages, validity from the injected now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeprem.pki import PkiBundle, SeededKeySource, issue_pki
from kubeprem.pki.certs import BACKDATE, CA_VALIDITY, LEAF_VALIDITY, cert_sans, cert_usages
from kubeprem.site import Site

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SERVER = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH


@pytest.fixture
def bundle(example_site: Site) -> PkiBundle:
    return issue_pki(example_site, NOW, SeededKeySource())


def subject(cert: x509.Certificate) -> tuple[str, list[str]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(cn[0].value), [str(o.value) for o in orgs]


def ips(*values: str) -> set[object]:
    return {ip_address(v) for v in values}


# (certificate id, CN, O, usages)
SUBJECTS = [
    ("etcd/controller-0/server", "controller-0", [], {SERVER, CLIENT}),
    ("etcd/controller-2/peer", "controller-2", [], {SERVER, CLIENT}),
    ("etcd/healthcheck-client", "kube-etcd-healthcheck-client", [], {CLIENT}),
    ("apiserver", "kube-apiserver", [], {SERVER}),
    ("apiserver-kubelet-client", "kube-apiserver-kubelet-client", [], {CLIENT}),
    ("apiserver-etcd-client", "kube-apiserver-etcd-client", [], {CLIENT}),
    ("front-proxy-client", "front-proxy-client", [], {CLIENT}),
    ("controller-manager", "system:kube-controller-manager", [], {CLIENT}),
    ("scheduler", "system:kube-scheduler", [], {CLIENT}),
    ("kube-proxy", "system:kube-proxy", [], {CLIENT}),
    ("admin", "kubernetes-admin", ["system:masters"], {CLIENT}),
    ("lb-healthcheck", "kubeprem:lb-healthcheck", [], {CLIENT}),
    ("kubelet/worker-1/kubelet-client", "system:node:worker-1", ["system:nodes"], {CLIENT}),
    ("kubelet/worker-1/kubelet", "system:node:worker-1", ["system:nodes"], {SERVER}),
    ("kube-controller-manager/controller-1/serving", "kube-controller-manager", [], {SERVER}),
    ("kube-scheduler/controller-2/serving", "kube-scheduler", [], {SERVER}),
]


@pytest.mark.parametrize(("cert_id", "cn", "orgs", "usages"), SUBJECTS)
def test_leaf_subject_and_usages(
    bundle: PkiBundle, cert_id: str, cn: str, orgs: list[str], usages: set[object]
) -> None:
    cert = bundle.cert(cert_id).cert
    assert subject(cert) == (cn, orgs)
    assert cert_usages(cert) == usages
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert not ku.value.key_encipherment  # EC keys: RFC 5480
    assert not ku.value.key_cert_sign
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is False


def test_cas(bundle: PkiBundle) -> None:
    assert subject(bundle.cluster_ca.cert) == ("kubernetes", [])
    assert subject(bundle.etcd_ca.cert) == ("etcd-ca", [])
    assert subject(bundle.front_proxy_ca.cert) == ("front-proxy-ca", [])
    for ca in (bundle.cluster_ca, bundle.etcd_ca, bundle.front_proxy_ca):
        cert = ca.cert
        assert cert.issuer == cert.subject
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
        assert cert.not_valid_before_utc == NOW - BACKDATE
        assert cert.not_valid_after_utc == NOW + CA_VALIDITY


@pytest.mark.parametrize(
    ("cert_id", "ca"),
    [
        ("apiserver", "ca"),
        ("etcd/controller-0/server", "etcd/ca"),
        ("etcd/healthcheck-client", "etcd/ca"),
        ("apiserver-etcd-client", "etcd/ca"),
        ("front-proxy-client", "front-proxy-ca"),
        ("kubelet/worker-0/kubelet", "ca"),
    ],
)
def test_issuers(bundle: PkiBundle, cert_id: str, ca: str) -> None:
    cert = bundle.cert(cert_id).cert
    cert.verify_directly_issued_by(bundle.cas[ca].cert)


def test_leaf_validity_from_injected_now(bundle: PkiBundle) -> None:
    for ck in bundle.certs.values():
        assert ck.cert.not_valid_before_utc == NOW - BACKDATE
        assert ck.cert.not_valid_after_utc == NOW + LEAF_VALIDITY


def test_keys_are_p256(bundle: PkiBundle) -> None:
    for ck in [*bundle.certs.values(), *bundle.cas.values()]:
        key = ck.cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.curve.name == "secp256r1"


def test_apiserver_sans(bundle: PkiBundle) -> None:
    dns, addrs = cert_sans(bundle.cert("apiserver").cert)
    assert set(dns) == {
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "controller-0",
        "controller-1",
        "controller-2",
    }
    assert set(addrs) == ips(
        "10.240.0.10", "10.240.0.11", "10.240.0.12", "10.240.0.100", "10.32.0.1", "127.0.0.1"
    )


def test_etcd_sans(bundle: PkiBundle, example_site: Site) -> None:
    for m in example_site.etcd_members:
        for ck in (bundle.etcd_server(m), bundle.etcd_peer(m)):
            dns, addrs = cert_sans(ck.cert)
            assert set(dns) == {m.name, "localhost"}
            assert set(addrs) == ips(str(m.address), "127.0.0.1", "::1")


def test_kubelet_serving_sans(bundle: PkiBundle, example_site: Site) -> None:
    for m in example_site.workers:
        dns, addrs = cert_sans(bundle.kubelet_serving(m).cert)
        assert dns == [m.name]
        assert addrs == [m.address]


def test_controller_serving_sans(bundle: PkiBundle, example_site: Site) -> None:
    """Prometheus verifies the controller-manager and scheduler by the
    machine's address; one certificate per controller and component."""
    for m in example_site.controllers:
        for ck in (bundle.controller_manager_serving(m), bundle.scheduler_serving(m)):
            assert ck.cert.issuer == bundle.cluster_ca.cert.subject
            dns, addrs = cert_sans(ck.cert)
            assert dns == [m.name]
            assert addrs == [m.address]
    serving = {i for i in bundle.certs if i.endswith("/serving")}
    assert serving == {
        f"{component}/{m.name}/serving"
        for m in example_site.controllers
        for component in ("kube-controller-manager", "kube-scheduler")
    }


def test_clients_have_no_sans(bundle: PkiBundle) -> None:
    for cert_id in ("admin", "kube-proxy", "apiserver-kubelet-client", "lb-healthcheck"):
        assert cert_sans(bundle.cert(cert_id).cert) == ([], [])


def test_one_kubelet_pair_per_worker_only(bundle: PkiBundle, example_site: Site) -> None:
    kubelets = {i for i in bundle.certs if i.startswith("kubelet/")}
    assert kubelets == {
        f"kubelet/{m.name}/{kind}"
        for m in example_site.workers
        for kind in ("kubelet", "kubelet-client")
    }


def test_seeded_issuance_is_reproducible(example_site: Site) -> None:
    a = issue_pki(example_site, NOW, SeededKeySource("s"))
    b = issue_pki(example_site, NOW, SeededKeySource("s"))
    assert a.cert("apiserver").key_pem == b.cert("apiserver").key_pem
    assert a.sa_key == b.sa_key
    c = issue_pki(example_site, NOW + timedelta(days=1), SeededKeySource("s"))
    assert (
        c.cert("apiserver").cert.not_valid_before_utc
        != a.cert("apiserver").cert.not_valid_before_utc
    )


def test_naive_now_is_refused(example_site: Site) -> None:
    with pytest.raises(ValueError, match="timezone"):
        issue_pki(example_site, datetime(2025, 1, 1), SeededKeySource())

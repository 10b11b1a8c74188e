"""Which PKI files each machine gets, where, and with which mode."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kubeprem.components import paths
from kubeprem.components.base import File, HostContext
from kubeprem.components.pki_files import pki_files
from kubeprem.pki import PkiBundle, SeededKeySource, issue_pki
from kubeprem.site import Site, example_text, parse_site

NOW = datetime(2025, 3, 1, tzinfo=UTC)

CONTROL_PLANE = {
    paths.CA_CRT, paths.CA_KEY, paths.APISERVER_CRT, paths.APISERVER_KEY,
    paths.APISERVER_KUBELET_CLIENT_CRT, paths.APISERVER_KUBELET_CLIENT_KEY,
    paths.APISERVER_ETCD_CLIENT_CRT, paths.APISERVER_ETCD_CLIENT_KEY,
    paths.FRONT_PROXY_CA_CRT, paths.FRONT_PROXY_CLIENT_CRT, paths.FRONT_PROXY_CLIENT_KEY,
    paths.SA_KEY, paths.SA_PUB, paths.ETCD_CA_CRT, paths.ADMIN_CONF,
    paths.CONTROLLER_MANAGER_CONF, paths.SCHEDULER_CONF, paths.ENCRYPTION_CONFIG,
    paths.CONTROLLER_MANAGER_SERVING_CRT, paths.CONTROLLER_MANAGER_SERVING_KEY,
    paths.SCHEDULER_SERVING_CRT, paths.SCHEDULER_SERVING_KEY,
}  # fmt: skip
ETCD = {
    paths.ETCD_CA_CRT, paths.ETCD_SERVER_CRT, paths.ETCD_SERVER_KEY, paths.ETCD_PEER_CRT,
    paths.ETCD_PEER_KEY, paths.ETCD_HEALTHCHECK_CLIENT_CRT, paths.ETCD_HEALTHCHECK_CLIENT_KEY,
}  # fmt: skip
WORKER = {
    paths.CA_CRT, paths.KUBELET_CONF, paths.KUBE_PROXY_CONF, paths.KUBELET_SERVING_CRT,
    paths.KUBELET_SERVING_KEY, paths.KUBELET_CLIENT_CRT, paths.KUBELET_CLIENT_KEY,
}  # fmt: skip
LB = {paths.HAPROXY_HEALTHCHECK_PEM}


@pytest.fixture
def bundle(example_site: Site) -> PkiBundle:
    return issue_pki(example_site, NOW, SeededKeySource())


def files(site: Site, bundle: PkiBundle, name: str) -> dict[str, File]:
    rendered = pki_files(HostContext(site, site.machine(name)), bundle)
    assert rendered.component == "pki" and rendered.services == ()
    return {f.path: f for f in rendered.files}


def test_controller_files(example_site: Site, bundle: PkiBundle) -> None:
    got = files(example_site, bundle, "controller-1")
    assert set(got) == CONTROL_PLANE | ETCD | LB
    assert (
        got[paths.ETCD_SERVER_CRT].content
        == bundle.etcd_server(example_site.machine("controller-1")).cert_pem
    )
    assert got[paths.CA_KEY].content == bundle.cluster_ca.key_pem.reveal()
    c1 = example_site.machine("controller-1")
    for crt, key, ck in (
        (
            paths.CONTROLLER_MANAGER_SERVING_CRT,
            paths.CONTROLLER_MANAGER_SERVING_KEY,
            bundle.controller_manager_serving(c1),
        ),
        (paths.SCHEDULER_SERVING_CRT, paths.SCHEDULER_SERVING_KEY, bundle.scheduler_serving(c1)),
    ):
        assert got[crt].content == ck.cert_pem and got[crt].mode == 0o644
        assert got[key].content == ck.key_pem.reveal()
        assert (got[key].mode, got[key].secret) == (0o600, True)


def test_worker_files(example_site: Site, bundle: PkiBundle) -> None:
    got = files(example_site, bundle, "worker-2")
    assert set(got) == WORKER
    w2 = example_site.machine("worker-2")
    assert got[paths.KUBELET_CONF].content == bundle.kubelet_kubeconfig(w2).reveal().encode()
    assert got[paths.KUBELET_SERVING_CRT].content == bundle.kubelet_serving(w2).cert_pem
    assert got[paths.KUBELET_CLIENT_KEY].content == bundle.kubelet_client(w2).key_pem.reveal()


def test_no_host_gets_etcd_or_front_proxy_ca_key(example_site: Site, bundle: PkiBundle) -> None:
    forbidden = {bundle.etcd_ca.key_pem.reveal(), bundle.front_proxy_ca.key_pem.reveal()}
    for m in example_site.machines:
        for f in files(example_site, bundle, m.name).values():
            assert not any(k in f.content for k in forbidden), (m.name, f.path)


def test_modes_and_secret_flag(example_site: Site, bundle: PkiBundle) -> None:
    for m in example_site.machines:
        for f in files(example_site, bundle, m.name).values():
            holds_key = b"PRIVATE KEY" in f.content or b"client-key-data" in f.content
            if holds_key or f.path == paths.ENCRYPTION_CONFIG:
                assert (f.mode, f.secret) == (0o600, True), f.path
            else:
                assert (f.mode, f.secret) == (0o644, False), f.path


def test_haproxy_pem_holds_cert_then_key(example_site: Site, bundle: PkiBundle) -> None:
    pem = files(example_site, bundle, "controller-0")[paths.HAPROXY_HEALTHCHECK_PEM].content
    ck = bundle.cert("lb-healthcheck")
    assert pem == ck.cert_pem + ck.key_pem.reveal()


def test_encryption_config_only_when_on() -> None:
    site, _ = parse_site(example_text().replace("at_rest: true", "at_rest: false"), "s.yaml")
    bundle = issue_pki(site, NOW, SeededKeySource())
    assert paths.ENCRYPTION_CONFIG not in files(site, bundle, "controller-0")

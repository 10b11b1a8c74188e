"""The rendered control plane, run for real on loopback: etcd (3 members,
mutual TLS), kube-apiserver, and HAProxy in front of it on the VIP port.

Nothing is faked: the certificates, flags and configuration files are those
``kubeprem render`` writes; only paths are re-rooted (see realcluster.py).
The cluster itself is the session fixture in conftest.py.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import MEMBERS, Cluster, kubectl

pytestmark = pytest.mark.integration


def test_etcd_forms_a_three_member_cluster_over_mutual_tls(loopback_etcd: Cluster) -> None:
    members = loopback_etcd.etcdctl("member", "list", "-w", "simple")
    assert members.returncode == 0, members.stderr
    assert sorted(line.split(", ")[2] for line in members.stdout.splitlines()) == MEMBERS
    for endpoint in ("127.0.0.10", "127.0.0.11", "127.0.0.12"):
        health = loopback_etcd.etcdctl("endpoint", "health", endpoint=endpoint)
        assert health.returncode == 0 and "is healthy" in health.stdout + health.stderr


def test_etcd_refuses_clients_without_a_certificate(loopback_etcd: Cluster) -> None:
    refused = loopback_etcd.etcdctl("endpoint", "health", cert=False)
    assert refused.returncode != 0
    assert "bad certificate" in refused.stderr or "unhealthy" in refused.stderr


def test_apiserver_is_ready_through_haproxy_on_the_vip(loopback_api: Cluster) -> None:
    ready = kubectl(loopback_api, "get", "--raw", "/readyz")
    assert ready.stdout.strip() == "ok"
    server = kubectl(loopback_api, "config", "view", "-o", "jsonpath={.clusters[0].cluster.server}")
    assert server.stdout == "https://127.0.0.100:8443"


def test_secrets_are_encrypted_at_rest_in_etcd(loopback_api: Cluster) -> None:
    created = kubectl(
        loopback_api, "create", "secret", "generic", "probe", "--from-literal=password=hunter2"
    )
    assert created.returncode == 0, created.stderr
    raw = loopback_api.etcdctl("get", "/registry/secrets/default/probe", "--print-value-only")
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.startswith("k8s:enc:aescbc:v1:")
    assert "hunter2" not in raw.stdout


def test_anonymous_requests_are_refused(loopback_api: Cluster) -> None:
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context(cafile=loopback_api.pki("controller-0", "ca.crt"))
    ctx.check_hostname = False
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen("https://127.0.0.10:6443/api", context=ctx, timeout=5)
    assert info.value.code == 401


def test_controller_manager_and_scheduler_kubeconfigs_authenticate(loopback_api: Cluster) -> None:
    for conf in ("controller-manager.conf", "scheduler.conf"):
        who = kubectl(loopback_api, "auth", "can-i", "list", "nodes", kubeconfig=conf)
        assert who.returncode == 0 and who.stdout.strip() == "yes", (conf, who.stderr)

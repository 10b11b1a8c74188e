"""The rendered control plane, run for real on loopback: etcd (3 members,
mutual TLS), kube-apiserver, and HAProxy in front of it on the VIP port.

Nothing is faked: the certificates, flags and configuration files are those
``kubeprem render`` writes; only paths are re-rooted (see realcluster.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubeprem.cli.main import main
from tests.integration.realcluster import (
    LOOPBACK_SITE,
    artifact,
    etcd_argv,
    exec_start,
    processes,
    reroot,
    wait_for,
)

pytestmark = pytest.mark.integration

MEMBERS = ["controller-0", "controller-1", "controller-2"]
ETCDCTL = str(artifact("etcdctl") or shutil.which("etcdctl") or "etcdctl")


@dataclass
class Cluster:
    out: Path
    tmp: Path

    def pki(self, member: str, rel: str) -> str:
        return str(self.out / member / "etc/kubernetes/pki" / rel)

    def etcdctl(
        self, *args: str, cert: bool = True, endpoint: str = "127.0.0.10"
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            ETCDCTL,
            f"--endpoints=https://{endpoint}:2379",
            f"--cacert={self.pki('controller-0', 'etcd/ca.crt')}",
        ]
        if cert:
            argv += [
                f"--cert={self.pki('controller-0', 'etcd/healthcheck-client.crt')}",
                f"--key={self.pki('controller-0', 'etcd/healthcheck-client.key')}",
            ]
        env = dict(os.environ, ETCDCTL_API="3")
        return subprocess.run(
            [*argv, "--command-timeout=5s", *args],
            capture_output=True,
            text=True,
            errors="replace",
            env=env,
        )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    if shutil.which("etcd") is None and artifact("etcd") is None:
        pytest.fail("etcd is not installed; ./run setup installs Debian's etcd-server")
    tmp = tmp_path_factory.mktemp("cp")
    site = tmp / "site.yaml"
    site.write_text(LOOPBACK_SITE)
    assert main(["render", str(site), "--out", str(tmp / "out")]) == 0
    return Cluster(tmp / "out", tmp)


@pytest.fixture(scope="module")
def etcd_cluster(rendered: Cluster) -> Iterator[Cluster]:
    with processes() as start:
        for i, member in enumerate(MEMBERS):
            data = rendered.tmp / f"etcd-{member}"
            data.mkdir(mode=0o700)
            start(
                etcd_argv(rendered.out, member, data, first=i == 0), rendered.tmp / f"{member}.log"
            )
        wait_for(
            lambda: rendered.etcdctl("endpoint", "health", "--cluster").returncode == 0,
            60,
            "a healthy 3-member etcd cluster",
        )
        yield rendered


def test_etcd_forms_a_three_member_cluster_over_mutual_tls(etcd_cluster: Cluster) -> None:
    members = etcd_cluster.etcdctl("member", "list", "-w", "simple")
    assert members.returncode == 0, members.stderr
    assert sorted(line.split(", ")[2] for line in members.stdout.splitlines()) == MEMBERS
    for endpoint in ("127.0.0.10", "127.0.0.11", "127.0.0.12"):
        health = etcd_cluster.etcdctl("endpoint", "health", endpoint=endpoint)
        assert health.returncode == 0 and "is healthy" in health.stdout + health.stderr


def test_etcd_refuses_clients_without_a_certificate(etcd_cluster: Cluster) -> None:
    refused = etcd_cluster.etcdctl("endpoint", "health", cert=False)
    assert refused.returncode != 0
    assert "bad certificate" in refused.stderr or "unhealthy" in refused.stderr


@pytest.fixture(scope="module")
def api(etcd_cluster: Cluster) -> Iterator[Cluster]:
    binary = artifact("kube-apiserver")
    if binary is None:
        pytest.skip(
            "kube-apiserver is not built here: run `kubeprem artifacts` (./run test does "
            "this before the tests, so CI never skips this)"
        )
    out = etcd_cluster.out
    member = "controller-0"
    unit = (out / member / "etc/systemd/system/kube-apiserver.service").read_text()
    argv = reroot(exec_start(unit), out / member, {})
    argv[0] = str(binary)
    haproxy_cfg = (out / member / "etc/haproxy/haproxy.cfg").read_text()
    cfg = etcd_cluster.tmp / "haproxy.cfg"
    cfg.write_text(
        haproxy_cfg.replace("/etc/kubernetes", f"{out / member}/etc/kubernetes")
        .replace("/etc/haproxy", f"{out / member}/etc/haproxy")
        .replace("    log /dev/log local0\n", "")
    )
    (out / member / "var/log/kubernetes").mkdir(parents=True, exist_ok=True)
    with processes() as start:
        start(argv, etcd_cluster.tmp / "apiserver.log")
        start(["haproxy", "-db", "-f", str(cfg)], etcd_cluster.tmp / "haproxy.log")
        wait_for(
            lambda: kubectl(etcd_cluster, "get", "--raw", "/readyz").returncode == 0,
            120,
            "API /readyz via the VIP",
        )
        yield etcd_cluster


def kubectl(
    c: Cluster, *args: str, kubeconfig: str = "admin.conf"
) -> subprocess.CompletedProcess[str]:
    conf = c.out / "controller-0/etc/kubernetes" / kubeconfig
    binary = str(artifact("kubectl") or "kubectl")
    return subprocess.run(
        [binary, f"--kubeconfig={conf}", "--request-timeout=5s", *args],
        capture_output=True,
        text=True,
    )


def test_apiserver_is_ready_through_haproxy_on_the_vip(api: Cluster) -> None:
    ready = kubectl(api, "get", "--raw", "/readyz")
    assert ready.stdout.strip() == "ok"
    server = kubectl(api, "config", "view", "-o", "jsonpath={.clusters[0].cluster.server}")
    assert server.stdout == "https://127.0.0.100:8443"


def test_secrets_are_encrypted_at_rest_in_etcd(api: Cluster) -> None:
    created = kubectl(
        api, "create", "secret", "generic", "probe", "--from-literal=password=hunter2"
    )
    assert created.returncode == 0, created.stderr
    raw = api.etcdctl("get", "/registry/secrets/default/probe", "--print-value-only")
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.startswith("k8s:enc:aescbc:v1:")
    assert "hunter2" not in raw.stdout


def test_anonymous_requests_are_refused(api: Cluster) -> None:
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context(cafile=api.pki("controller-0", "ca.crt"))
    ctx.check_hostname = False
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen("https://127.0.0.10:6443/api", context=ctx, timeout=5)
    assert info.value.code == 401


def test_controller_manager_and_scheduler_kubeconfigs_authenticate(api: Cluster) -> None:
    for conf in ("controller-manager.conf", "scheduler.conf"):
        who = kubectl(api, "auth", "can-i", "list", "nodes", kubeconfig=conf)
        assert who.returncode == 0 and who.stdout.strip() == "yes", (conf, who.stderr)

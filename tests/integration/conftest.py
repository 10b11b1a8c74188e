"""A real control plane on loopback, started once for the whole integration
tier: the rendered etcd (3 members, mutual TLS), kube-apiserver and HAProxy
on the VIP port (see realcluster.py for how rendered files are run).

Session-scoped: the tests that need an API server share one; each test
uses names of its own so they do not disturb each other.
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


@pytest.fixture(scope="session")
def loopback_rendered(tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    if shutil.which("etcd") is None and artifact("etcd") is None:
        pytest.fail("etcd is not installed; ./run setup installs Debian's etcd-server")
    tmp = tmp_path_factory.mktemp("cp")
    site = tmp / "site.yaml"
    site.write_text(LOOPBACK_SITE)
    assert main(["render", str(site), "--out", str(tmp / "out")]) == 0
    return Cluster(tmp / "out", tmp)


@pytest.fixture(scope="session")
def loopback_etcd(loopback_rendered: Cluster) -> Iterator[Cluster]:
    with processes() as start:
        for i, member in enumerate(MEMBERS):
            data = loopback_rendered.tmp / f"etcd-{member}"
            data.mkdir(mode=0o700)
            start(
                etcd_argv(loopback_rendered.out, member, data, first=i == 0),
                loopback_rendered.tmp / f"{member}.log",
            )
        wait_for(
            lambda: loopback_rendered.etcdctl("endpoint", "health", "--cluster").returncode == 0,
            60,
            "a healthy 3-member etcd cluster",
        )
        yield loopback_rendered


@pytest.fixture(scope="session")
def loopback_api(loopback_etcd: Cluster) -> Iterator[Cluster]:
    binary = artifact("kube-apiserver")
    if binary is None:
        pytest.skip(
            "kube-apiserver is not built here: run `kubeprem artifacts` (./run test does "
            "this before the tests, so CI never skips this)"
        )
    out = loopback_etcd.out
    member = "controller-0"
    unit = (out / member / "etc/systemd/system/kube-apiserver.service").read_text()
    argv = reroot(exec_start(unit), out / member, {})
    argv[0] = str(binary)
    # Here only: the members listen on 127.0.0.x, which the default (lease)
    # endpoint reconciler refuses as the kubernetes Service's endpoint since
    # 1.2x ("may not be in the loopback range"); real sites never have that.
    argv.append("--endpoint-reconciler-type=none")
    haproxy_cfg = (out / member / "etc/haproxy/haproxy.cfg").read_text()
    cfg = loopback_etcd.tmp / "haproxy.cfg"
    cfg.write_text(
        haproxy_cfg.replace("/etc/kubernetes", f"{out / member}/etc/kubernetes")
        .replace("/etc/haproxy", f"{out / member}/etc/haproxy")
        .replace("    log /dev/log local0\n", "")
    )
    (out / member / "var/log/kubernetes").mkdir(parents=True, exist_ok=True)
    with processes() as start:
        start(argv, loopback_etcd.tmp / "apiserver.log")
        start(["haproxy", "-db", "-f", str(cfg)], loopback_etcd.tmp / "haproxy.log")
        wait_for(
            lambda: kubectl(loopback_etcd, "get", "--raw", "/readyz").returncode == 0,
            120,
            "API /readyz via the VIP",
        )
        yield loopback_etcd


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

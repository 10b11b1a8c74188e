"""The whole bootstrap on the lab: bare machines to an HA cluster, then the
checks of the apply issue, all against real programs.

One module-scoped cluster (lab up + apply, a few minutes) is shared by the
tests here; it is torn down at the end even when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubeprem.addons import dns
from kubeprem.cli.main import main
from kubeprem.site import LoadedSite, load_site
from tests.integration.realcluster import artifact, wait_for
from tests.lab.conftest import require_lab_host, write_lab_site

pytestmark = pytest.mark.lab


@dataclass
class Cluster:
    loaded: LoadedSite
    path: Path

    @property
    def pki(self) -> Path:
        return self.loaded.state_dir / "pki"

    def kubectl(
        self, *args: str, kubeconfig: str = "admin.conf", stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        binary = str(artifact("kubectl") or "kubectl")
        conf = self.pki / "kubeconfig" / kubeconfig
        return subprocess.run(
            [binary, f"--kubeconfig={conf}", "--request-timeout=20s", *args],
            capture_output=True,
            text=True,
            input=stdin,
            errors="replace",
        )

    def ssh(self, machine: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "kubeprem.cli.main",
                "lab",
                "ssh",
                str(self.path),
                machine,
                "--",
                *argv,
            ],
            capture_output=True,
            text=True,
            errors="replace",
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_lab_host()
    if artifact("kube-apiserver") is None:
        pytest.fail("no Kubernetes artifacts: run `kubeprem artifacts` first (./run test does)")
    folder = tmp_path_factory.mktemp("cluster")
    path = write_lab_site(folder, subnet_octet=200 + secrets.randbelow(50))
    try:
        assert main(["lab", "up", str(path)]) == 0
        assert main(["apply", str(path), "--yes"]) == 0
        yield Cluster(load_site(path), path)
    finally:
        if os.environ.get("KUBEPREM_KEEP_LAB") != "1":  # keep it to debug a failure
            main(["lab", "down", str(path)])


def test_every_worker_is_ready_through_the_vip(cluster: Cluster) -> None:
    out = cluster.kubectl("get", "nodes", "-o", "json")
    assert out.returncode == 0, out.stderr
    nodes = json.loads(out.stdout)["items"]
    ready = {
        n["metadata"]["name"]: any(
            c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]
        )
        for n in nodes
    }
    assert ready == {"worker-0": True, "worker-1": True, "worker-2": True}
    server = cluster.kubectl("config", "view", "-o", "jsonpath={.clusters[0].cluster.server}")
    assert server.stdout == f"https://{cluster.loaded.site.api.vip}:8443"
    # every node got the pod CIDR its bridge and the routes use
    cidrs = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in nodes}
    assert cidrs == {k: str(v) for k, v in cluster.loaded.site.pod_cidrs.items()}


def test_secrets_are_encrypted_in_etcd(cluster: Cluster) -> None:
    made = cluster.kubectl(
        "create", "secret", "generic", "at-rest", "--from-literal=k=plaintext-marker"
    )
    assert made.returncode == 0, made.stderr
    raw = cluster.ssh(
        "controller-0",
        "/usr/local/bin/etcdctl",
        "--endpoints=https://127.0.0.1:2379",
        "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
        "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt",
        "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key",
        "get",
        "/registry/secrets/default/at-rest",
        "--print-value-only",
    )
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.startswith("k8s:enc:aescbc:v1:")
    assert "plaintext-marker" not in raw.stdout


def test_kubelet_refuses_anonymous_requests(cluster: Cluster) -> None:
    """From a controller (the firewall lets only controllers reach port
    10250): a request without credentials gets 401 from the kubelet."""
    worker = cluster.loaded.site.machine("worker-0")
    out = cluster.ssh(
        "controller-0",
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        "/etc/kubernetes/pki/ca.crt",
        "--resolve",
        f"worker-0:10250:{worker.address}",
        "https://worker-0:10250/pods",
    )
    assert out.stdout.strip() == "401", (out.stdout, out.stderr)


def test_a_kubelet_cannot_modify_another_node(cluster: Cluster) -> None:
    own = cluster.kubectl(
        "label",
        "node",
        "worker-0",
        "kubeprem.io/probe=1",
        "--overwrite",
        kubeconfig="kubelet-worker-0.conf",
    )
    other = cluster.kubectl(
        "label",
        "node",
        "worker-1",
        "kubeprem.io/probe=1",
        "--overwrite",
        kubeconfig="kubelet-worker-0.conf",
    )
    assert other.returncode != 0
    assert "forbidden" in other.stderr.lower() or "cannot modify" in other.stderr.lower(), (
        other.stderr
    )
    del own  # a kubelet may or may not label itself; only the other node matters here


SMOKE = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: labsmoke, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: labsmoke}}
  template:
    metadata: {labels: {app: labsmoke}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
         labelSelector: {matchLabels: {app: labsmoke}}}
      containers:
      - name: web
        image: kubeprem.local/busybox:1.35.0-bookworm
        imagePullPolicy: Never
        command: ["/bin/busybox", "sh", "-c",
                  "mkdir -p /www && hostname > /www/index.html && exec /bin/busybox httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata: {name: labsmoke, namespace: default}
spec:
  selector: {app: labsmoke}
  ports: [{port: 80, targetPort: 8080}]
"""


def test_pods_on_different_workers_reach_each_other_and_the_service(cluster: Cluster) -> None:
    """The smoke workload: an imported image (no registry), pods on every
    worker, pod-to-pod across nodes over the static routes, and a Service."""
    assert cluster.kubectl("apply", "-f", "-", stdin=SMOKE).returncode == 0
    wait_for(
        lambda: (
            cluster.kubectl("rollout", "status", "deployment/labsmoke", "--timeout=5s").returncode
            == 0
        ),
        180,
        "the smoke deployment",
    )
    pods = json.loads(cluster.kubectl("get", "pods", "-l", "app=labsmoke", "-o", "json").stdout)[
        "items"
    ]
    by_node = {p["spec"]["nodeName"]: (p["metadata"]["name"], p["status"]["podIP"]) for p in pods}
    assert set(by_node) == {"worker-0", "worker-1", "worker-2"}
    client, _ = by_node["worker-0"]
    fetch = 'printf "GET / HTTP/1.0\\r\\n\\r\\n" | /bin/busybox nc -w 5 "$0" "$1" | /bin/busybox tail -n 1'
    for node in ("worker-1", "worker-2"):
        name, ip = by_node[node]
        out = cluster.kubectl("exec", client, "--", "/bin/busybox", "sh", "-c", fetch, ip, "8080")
        assert out.stdout.strip() == name, (node, out.stdout, out.stderr)
    svc = cluster.kubectl("get", "service", "labsmoke", "-o", "jsonpath={.spec.clusterIP}").stdout
    seen = set()
    for _ in range(12):
        out = cluster.kubectl("exec", client, "--", "/bin/busybox", "sh", "-c", fetch, svc, "80")
        seen.add(out.stdout.strip())
    names = {name for name, _ in by_node.values()}
    assert seen <= names and len(seen) >= 2, seen  # the Service spreads over pods on several nodes


DNS_STATEFUL = """
apiVersion: v1
kind: Service
metadata: {name: dnsweb, namespace: default}
spec:
  clusterIP: None
  selector: {app: dnsweb}
  ports: [{port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: dnsweb, namespace: default}
spec:
  serviceName: dnsweb
  replicas: 2
  selector: {matchLabels: {app: dnsweb}}
  template:
    metadata: {labels: {app: dnsweb}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: kubeprem.local/busybox:1.35.0-bookworm
        imagePullPolicy: Never
        command: ["/bin/busybox", "sleep", "3600"]
"""


def test_coredns_resolves_statefulset_pods_and_forwards_nothing(cluster: Cluster) -> None:
    """On 1.37 the cluster DNS is CoreDNS (the catalogue's image): a pod
    resolves a StatefulSet pod as <pod>.<svc>.<ns>.svc.<domain>, and a name
    outside the cluster is refused, not forwarded anywhere (air-gapped)."""
    deploy = json.loads(
        cluster.kubectl(
            "get", "deployment", "cluster-dns", "-n", "kube-system", "-o", "json"
        ).stdout
    )
    assert deploy["metadata"]["annotations"]["kubeprem.io/dns-server"] == "coredns"
    images = [c["image"] for c in deploy["spec"]["template"]["spec"]["containers"]]
    assert images[0] == "kubeprem.local/coredns:1.15.0-bookworm", images
    assert cluster.kubectl("apply", "-f", "-", stdin=DNS_STATEFUL).returncode == 0
    wait_for(
        lambda: (
            cluster.kubectl("rollout", "status", "statefulset/dnsweb", "--timeout=5s").returncode
            == 0
        ),
        180,
        "the dnsweb StatefulSet",
    )
    ip = cluster.kubectl("get", "pod", "dnsweb-1", "-o", "jsonpath={.status.podIP}").stdout.strip()
    assert ip
    name = "dnsweb-1.dnsweb.default.svc.cluster.local"
    out = cluster.kubectl("exec", "dnsweb-0", "--", "/bin/busybox", "nslookup", name)
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert dns.lookup_result(out.stdout, ip) is not None, out.stdout
    outside = cluster.kubectl("exec", "dnsweb-0", "--", "/bin/busybox", "nslookup", "example.com.")
    said = outside.stdout + outside.stderr
    assert "REFUSED" in said and "Name:" not in said, said
    cluster.kubectl("delete", "-f", "-", "--wait=false", stdin=DNS_STATEFUL)


def test_second_apply_changes_nothing(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["plan", str(cluster.path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["hosts"] == {m.name: [] for m in cluster.loaded.site.machines}
    assert main(["apply", str(cluster.path), "--yes", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["changes"] == 0
    assert all(p["changes"] == 0 for p in summary["phases"])


def _connects(cluster: Cluster, source: str, address: str, port: int) -> bool:
    probe = f"timeout 3 bash -c '</dev/tcp/{address}/{port}' && echo open || echo closed"
    out = cluster.ssh(source, "sh", "-c", probe)
    return out.stdout.strip().endswith("open")


def test_firewall_lets_each_port_in_only_from_its_roles(cluster: Cluster) -> None:
    site = cluster.loaded.site
    c0 = str(site.machine("controller-0").address)
    w1 = str(site.machine("worker-1").address)
    assert not _connects(cluster, "worker-0", c0, 2379), "a worker reached etcd"
    assert not _connects(cluster, "worker-0", w1, 10250), "a worker reached another kubelet"
    assert _connects(cluster, "controller-1", c0, 2379)
    assert _connects(cluster, "controller-1", w1, 10250)
    # what in-cluster Prometheus scrapes etcd on, from a worker's address
    assert _connects(cluster, "worker-0", c0, 2381), "a worker cannot reach etcd's metrics"
    # the other metrics ports listen on the machine's address, open to nodes
    for address, port, what in (
        (c0, 10257, "kube-controller-manager"),
        (c0, 10259, "kube-scheduler"),
        (c0, 8405, "HAProxy's exporter"),
        (w1, 10249, "kube-proxy's metrics"),
    ):
        assert _connects(cluster, "worker-0", address, port), f"a worker cannot reach {what}"
    assert _connects(cluster, "worker-0", str(site.api.vip), site.api.port)
    counters = cluster.ssh(
        "controller-0", "nft", "list", "counter", "inet", "kubeprem", "input_dropped"
    )
    assert "packets" in counters.stdout, counters.stderr


def test_systemd_accepts_every_rendered_unit(cluster: Cluster) -> None:
    """`systemd-analyze verify` where it works: on the machines, with the
    binaries in place (the build host has no systemd as PID 1)."""
    units = {
        "controller-0": [
            "etcd.service",
            "kube-apiserver.service",
            "kube-controller-manager.service",
            "kube-scheduler.service",
            "haproxy.service",
            "keepalived.service",
            "kubeprem-pod-routes.service",
            "kubeprem-firewall.service",
        ],
        "worker-0": [
            "containerd.service",
            "kubelet.service",
            "kube-proxy.service",
            "kubeprem-pod-routes.service",
            "kubeprem-firewall.service",
        ],
    }
    for machine, names in units.items():
        paths = [f"/etc/systemd/system/{n}" for n in names]
        # --man=no: the machines have no man pages for Documentation=man:... lines
        out = cluster.ssh(machine, "systemd-analyze", "verify", "--man=no", *paths)
        assert out.returncode == 0, (machine, out.stdout, out.stderr)
        assert out.stderr.strip() == "", (machine, out.stderr)


def test_verify_security_passes_then_names_a_loosened_key(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["verify", str(cluster.path), "--security", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in results} <= {"pass", "exception"}
    # the only exception in the lab: kernel defaults belong to the host
    assert {r["id"] for r in results if r["status"] == "exception"} <= {
        "kubelet.protect-kernel-defaults"
    }
    key = "/etc/kubernetes/pki/apiserver.key"
    assert cluster.ssh("controller-1", "chmod", "0644", key).returncode == 0
    try:
        assert main(["verify", str(cluster.path), "--security", "--json"]) == 1
        failed = [r for r in json.loads(capsys.readouterr().out) if r["status"] == "fail"]
        assert [(r["machine"], r["id"]) for r in failed] == [("controller-1", "files.keys")]
        assert key in failed[0]["detail"]
    finally:
        cluster.ssh("controller-1", "chmod", "0600", key)

"""Day-2 operations on a real lab cluster: verify, backup and restore, certificate
renewal, encryption key rotation, and the chaos scenarios.

Expensive: one module-scoped cluster (`lab up` + `apply`) shared by every test
here, torn down at the end even when a test fails. The tests run in file order;
each leaves the cluster healthy for the next (the chaos test last).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeprem.cli.main import main
from kubeprem.pki.check import check_pki
from kubeprem.site import LoadedSite, load_site
from kubeprem.workflows import chaos
from kubeprem.workflows.encryption_rotate import PREFIX
from tests.lab.conftest import require_lab_host, write_lab_site

pytestmark = pytest.mark.lab

ADMIN = "--kubeconfig=/etc/kubernetes/admin.conf"
# seconds: the longest run of failed probes through the VIP during `certs
# renew --all` (a probe slower than 1 s counts as failed)
RENEW_OUTAGE_GOAL = 2.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedSite]:
    require_lab_host()
    path = write_lab_site(tmp_path_factory.mktemp("day2"))
    try:
        assert main(["lab", "up", str(path)]) == 0
        assert main(["apply", str(path), "--yes"]) == 0
        yield load_site(path)
    finally:
        main(["lab", "down", str(path)])


def on(loaded: LoadedSite, name: str, *command: str) -> subprocess.CompletedProcess[str]:
    kubeprem = Path(sys.executable).parent / "kubeprem"
    return subprocess.run(
        [str(kubeprem), "lab", "ssh", str(loaded.path), name, "--", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def kubectl(loaded: LoadedSite, *args: str) -> subprocess.CompletedProcess[str]:
    return on(loaded, "controller-0", "kubectl", ADMIN, *args)


def etcd_raw(loaded: LoadedSite, key: str) -> bytes:
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "kubeprem"),
            "lab",
            "ssh",
            str(loaded.path),
            "controller-0",
            "--",
            "etcdctl",
            "--endpoints=https://127.0.0.1:2379",
            "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
            "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt",
            "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key",
            "get",
            key,
            "--print-value-only",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return proc.stdout


def test_verify_reports_a_healthy_cluster(cluster: LoadedSite) -> None:
    assert main(["verify", str(cluster.path)]) == 0


def test_backup_then_restore_brings_back_what_was_before_and_drops_what_came_after(
    cluster: LoadedSite,
) -> None:
    assert kubectl(cluster, "create", "namespace", "day2-before").returncode == 0
    assert (
        kubectl(
            cluster, "-n", "day2-before", "create", "configmap", "keep", "--from-literal=a=b"
        ).returncode
        == 0
    )
    assert main(["backup", str(cluster.path)]) == 0
    backups = sorted((cluster.state_dir / "backups").iterdir())
    assert (backups[-1] / "etcd-snapshot.db").stat().st_size > 4096
    timer = on(cluster, "controller-1", "systemctl", "is-enabled", "kubeprem-etcd-snapshot.timer")
    assert timer.stdout.strip() == "enabled"
    assert kubectl(cluster, "create", "namespace", "day2-after").returncode == 0
    assert kubectl(cluster, "delete", "namespace", "day2-before", "--wait=true").returncode == 0
    assert main(["restore", str(cluster.path), str(backups[-1]), "--yes"]) == 0
    got = kubectl(cluster, "-n", "day2-before", "get", "configmap", "keep", "-o", "json")
    assert got.returncode == 0 and json.loads(got.stdout)["data"] == {"a": "b"}
    assert kubectl(cluster, "get", "namespace", "day2-after").returncode != 0
    assert main(["verify", str(cluster.path)]) == 0


def test_certs_renew_all_reissues_every_leaf_and_the_cluster_stays_healthy(
    cluster: LoadedSite,
) -> None:
    from datetime import UTC, datetime

    before = {s.id: s.not_after for s in check_pki(cluster, datetime.now(UTC))}
    probe = chaos.Probe(chaos.ProbeTarget.of(cluster))
    probe.start()
    try:
        assert main(["certs", "renew", str(cluster.path), "--all"]) == 0
    finally:
        samples = probe.stop()
    # every etcd member, API server and HAProxy restarts or reloads, one
    # machine at a time: the API stays reachable through the VIP
    spans = chaos.outages(samples)
    failed = [f"{s.t:.1f} s: {s.error}" for s in samples if not s.ok]
    assert chaos.longest(spans) <= RENEW_OUTAGE_GOAL, failed
    after = {s.id: s.not_after for s in check_pki(cluster, datetime.now(UTC))}
    assert after["ca"] == before["ca"]
    assert after["apiserver"] > before["apiserver"]
    served = on(
        cluster,
        "controller-1",
        "sh",
        "-c",
        "openssl x509 -noout -serial -in /etc/kubernetes/pki/apiserver.crt",
    )
    local = subprocess.run(
        [
            "openssl",
            "x509",
            "-noout",
            "-serial",
            "-in",
            str(cluster.state_dir / "pki/apiserver.crt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if served.returncode == 0 and local.returncode == 0:
        assert served.stdout == local.stdout
    assert main(["verify", str(cluster.path)]) == 0


def test_encryption_rotate_rewrites_secrets_under_the_new_key(cluster: LoadedSite) -> None:
    assert (
        kubectl(cluster, "create", "secret", "generic", "day2-s", "--from-literal=p=q").returncode
        == 0
    )
    old = etcd_raw(cluster, "/registry/secrets/default/day2-s")
    assert old.startswith(PREFIX.encode())
    old_key = old[len(PREFIX) :].split(b":", 1)[0]
    assert main(["encryption", "rotate", str(cluster.path), "--yes"]) == 0
    new = etcd_raw(cluster, "/registry/secrets/default/day2-s")
    new_key = new[len(PREFIX) :].split(b":", 1)[0]
    assert new.startswith(PREFIX.encode()) and new_key != old_key
    text = (cluster.state_dir / "pki/encryption-config.yaml").read_text()
    # whole names: the old one may be a prefix of the new (key-20261126, key-20261126-2)
    assert f"name: {new_key.decode()}\n" in text and f"name: {old_key.decode()}\n" not in text
    got = kubectl(cluster, "get", "secret", "day2-s", "-o", "jsonpath={.data.p}")
    assert got.stdout == "cQ=="  # base64 of "q"


def test_node_remove_resets_a_worker_and_node_add_brings_it_back(cluster: LoadedSite) -> None:
    assert main(["node", "remove", str(cluster.path), "worker-2", "--yes"]) == 0
    nodes = kubectl(cluster, "get", "nodes", "-o", "name").stdout
    assert "node/worker-2" not in nodes and "node/worker-1" in nodes
    left = on(cluster, "worker-2", "sh", "-c", "ls /etc/kubernetes /usr/local/bin/kubelet; true")
    assert "No such file" in left.stderr
    active = on(cluster, "worker-2", "systemctl", "is-active", "kubelet")
    assert active.stdout.strip() != "active"
    assert main(["node", "add", str(cluster.path), "worker-2", "--yes"]) == 0
    ready = kubectl(cluster, "get", "node", "worker-2", "-o", "json")
    conditions = json.loads(ready.stdout)["status"]["conditions"]
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_a_controller_removed_and_added_again_rejoins_etcd_as_a_new_member(
    cluster: LoadedSite,
) -> None:
    """A controller's machine replaced: remove it (etcd member remove, reset),
    then add it back; its etcd joins the running cluster as a new member."""

    def members() -> dict[str, str]:
        out = on(
            cluster,
            "controller-0",
            "etcdctl",
            "--endpoints=https://127.0.0.1:2379",
            "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
            "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt",
            "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key",
            "member",
            "list",
            "-w",
            "json",
        )
        assert out.returncode == 0, out.stderr
        return {format(m["ID"], "x"): m.get("name", "") for m in json.loads(out.stdout)["members"]}

    before = members()
    assert sorted(before.values()) == ["controller-0", "controller-1", "controller-2"]
    assert main(["node", "remove", str(cluster.path), "controller-2", "--yes"]) == 0
    assert sorted(members().values()) == ["controller-0", "controller-1"]
    assert main(["node", "add", str(cluster.path), "controller-2", "--yes"]) == 0
    after = members()
    assert sorted(after.values()) == ["controller-0", "controller-1", "controller-2"]
    old_id = next(i for i, n in before.items() if n == "controller-2")
    new_id = next(i for i, n in after.items() if n == "controller-2")
    assert new_id != old_id  # a new member, not the old one resurrected
    unit = on(cluster, "controller-2", "cat", "/etc/systemd/system/etcd.service").stdout
    assert "--initial-cluster-state=existing" in unit
    assert main(["verify", str(cluster.path)]) == 0
    plan = subprocess.run(
        [str(Path(sys.executable).parent / "kubeprem"), "plan", str(cluster.path), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert plan.returncode == 0, plan.stderr
    assert all(not c for c in json.loads(plan.stdout)["hosts"].values()), plan.stdout


def test_chaos_scenarios_pass(cluster: LoadedSite, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["verify", str(cluster.path), "--chaos", "--json"])
    results = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in results} == {"vip-failover", "etcd-member-stop", "restore"}
    for r in results:
        assert {"name", "passed", "outage_seconds", "goal_seconds"} <= set(r)
        assert Path(r["timeline"]).exists()
    assert status == 0, json.dumps(results, indent=1)

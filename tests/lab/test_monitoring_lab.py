"""Monitoring on the lab: a stopped kube-apiserver reaches a webhook.

A cluster of its own (up, apply, storage, monitoring deploy), Alertmanager's
webhook pointed at a small HTTP receiver on the lab host's bridge address
(the highest address of the node subnet; pods reach it through their node,
the CNI masquerades). Stopping controller-1's kube-apiserver must bring the
firing KubeAPIServerDown notification within the rule's ``for:`` (2 min)
plus a few scrape and evaluation intervals, and starting it again the
resolved one.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kubeprem.cli.main import main
from kubeprem.site import LoadedSite, load_site
from kubeprem.workflows import gates
from tests.lab.conftest import require_lab_host, write_lab_site

pytestmark = pytest.mark.lab

PORT = 9095
SCRAPE = 10  # seconds; also the rule evaluation interval
FOR = 120  # KubeAPIServerDown's for:
# for: + scrape and evaluation slack + group_wait (10 s) + the webhook send
FIRING_WITHIN = FOR + 8 * SCRAPE + 30
# resolution: the next scrape, the evaluation, Alertmanager's resolve timeout
# on the next group_interval (5 min) at the latest
RESOLVED_WITHIN = 5 * 60 + 6 * SCRAPE


class Receiver:
    """Records every Alertmanager notification with the time it arrived."""

    def __init__(self, address: str, port: int) -> None:
        self.got: list[tuple[float, dict[str, Any]]] = []
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                got.append((time.monotonic(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((address, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, status: str, alert: str, node: str, since: float, timeout: float) -> float:
        """Seconds from ``since`` to the first notification with that alert in ``status``."""
        deadline = since + timeout
        while time.monotonic() < deadline:
            for at, doc in list(self.got):
                if at < since:
                    continue
                for a in doc.get("alerts", []):
                    labels = a.get("labels", {})
                    if (
                        a.get("status") == status
                        and labels.get("alertname") == alert
                        and labels.get("node") == node
                    ):
                        return at - since
            time.sleep(2)
        seen = [
            (round(at - since), a.get("status"), a.get("labels", {}).get("alertname"))
            for at, doc in self.got
            for a in doc.get("alerts", [])
        ]
        pytest.fail(f"no {status} {alert} for {node} within {timeout:.0f} s; received {seen}")


def on(loaded: LoadedSite, name: str, *command: str) -> subprocess.CompletedProcess[str]:
    kubeprem = Path(sys.executable).parent / "kubeprem"
    return subprocess.run(
        [str(kubeprem), "lab", "ssh", str(loaded.path), name, "--", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def host_address(loaded: LoadedSite) -> str:
    """The lab host's address on the bridge: the subnet's highest."""
    return str(ipaddress.ip_network(loaded.site.network.node_cidr)[-2])


@pytest.fixture(scope="module")
def monitored(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LoadedSite, Receiver]]:
    require_lab_host()
    folder = tmp_path_factory.mktemp("monitoring")
    path = write_lab_site(folder, subnet_octet=50 + secrets.randbelow(50))
    receiver: Receiver | None = None
    try:
        assert main(["lab", "up", str(path)]) == 0
        loaded = load_site(path)
        receiver = Receiver(host_address(loaded), PORT)
        values = folder / "monitoring.yaml"
        values.write_text(
            f"scrape_interval_seconds: {SCRAPE}\n"
            "prometheus_storage: 2Gi\n"
            "alertmanager_storage: 100Mi\n"
            f"webhook: {{url: 'http://{host_address(loaded)}:{PORT}/alerts'}}\n",
            encoding="utf-8",
        )
        assert main(["apply", str(path), "--yes"]) == 0
        assert main(["storage", str(path), "--size", "5Gi"]) == 0
        assert (
            main(["images", "build", "--only", "prometheus", "alertmanager", "node-exporter"]) == 0
        )
        assert main(["monitoring", "deploy", str(path), "--values", str(values)]) == 0
        yield loaded, receiver
    finally:
        if receiver is not None:
            receiver.close()
        main(["lab", "down", str(path)])


def prometheus_api(loaded: LoadedSite, pod: str, path: str) -> dict[str, Any]:
    """GET Prometheus's API on one replica, through the API server's pod proxy."""
    proxy = f"/api/v1/namespaces/monitoring/pods/{pod}:9090/proxy{path}"
    r = on(loaded, "controller-0", *gates.kubectl("get", f"--raw={proxy}"))
    assert r.returncode == 0, f"{proxy}: {r.stderr.strip()}"
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def unhealthy_targets(loaded: LoadedSite, pod: str) -> tuple[dict[str, int], list[str]]:
    """(targets per job, every target not up with its last error) on one replica."""
    doc = prometheus_api(loaded, pod, "/api/v1/targets?state=active")
    per_job: dict[str, int] = {}
    bad: list[str] = []
    for t in doc["data"]["activeTargets"]:
        job = t["labels"]["job"]
        per_job[job] = per_job.get(job, 0) + 1
        if t["health"] != "up":
            bad.append(
                f"{job} {t['labels'].get('node') or t['labels'].get('instance')} "
                f"({t['scrapeUrl']}): {t['health']}, {t['lastError'] or 'no error yet'}"
            )
    return per_job, bad


def wait_targets_up(
    loaded: LoadedSite,
    pod: str,
    expected: dict[str, int],
    *,
    every: float,
    only_these: bool = False,
    timeout: float = 300,
) -> None:
    """Wait until Prometheus replica ``pod`` has exactly ``expected[job]``
    targets of each job, all up (``only_these``: and no other job); fail
    after ``timeout`` s naming the counts and every target not up."""
    deadline = time.monotonic() + timeout
    while True:
        per_job, not_up = unhealthy_targets(loaded, pod)
        found = per_job if only_these else {job: per_job.get(job, 0) for job in expected}
        bad = [b for b in not_up if only_these or b.split(" ", 1)[0] in expected]
        if found == expected and not bad:
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"{pod}: targets per job {found}, expected {expected} within {timeout:.0f} s; "
                f"not up: {bad or 'none (missing targets were not discovered)'}"
            )
        time.sleep(every)


def raised_alerts(loaded: LoadedSite, pod: str, names: set[str], label: str) -> list[str]:
    """The alerts of ``names`` pending or firing on replica ``pod``, as
    ``"<alertname> <label's value> (<state>)"``, sorted."""
    alerts = prometheus_api(loaded, pod, "/api/v1/alerts")["data"]["alerts"]
    return sorted(
        f"{a['labels']['alertname']} {a['labels'].get(label, '')} ({a['state']})"
        for a in alerts
        if a["labels"].get("alertname") in names
    )


# Alerts a healthy cluster must not raise, pending included: they say a
# scrape failed. (EtcdBackupMissing may fire on a fresh lab: no backup ran.)
DOWN_ALERTS = {
    "EtcdMemberDown",
    "EtcdNoLeader",
    "KubeAPIServerDown",
    "KubeletDown",
    "NodeExporterDown",
    "KubeControllerManagerDown",
    "KubeSchedulerDown",
    "HAProxyDown",
    "AlertmanagerNotificationsFailing",
}


def test_every_target_is_up_and_no_down_alert(monitored: tuple[LoadedSite, Receiver]) -> None:
    """With the default node firewall every scrape Prometheus knows succeeds,
    on both replicas: etcd (its metrics listener), the API servers, the
    kubelets and cAdvisor (through the API server), every controller-manager
    and scheduler (HTTPS on the machine's address, verified against the
    cluster CA), every kube-proxy, HAProxy's exporter on every lb machine,
    node exporter on every worker, Prometheus and Alertmanager. Then no
    scrape-failure alert is pending or firing."""
    loaded, _ = monitored
    site = loaded.site
    expected = {
        "etcd": len(site.etcd_members),
        "kube-apiserver": len(site.controllers),
        "kube-controller-manager": len(site.controllers),
        "kube-scheduler": len(site.controllers),
        "kube-proxy": len(site.workers),
        "haproxy": len(site.load_balancers),
        "kubelet": len(site.workers),
        "cadvisor": len(site.workers),
        "node-exporter": len(site.workers),
        "prometheus": 1,
        "alertmanager": 2,
    }
    for job in ("kube-controller-manager", "kube-scheduler", "kube-proxy", "haproxy"):
        assert expected[job] > 0, f"the lab site has no machine for {job}"
    for pod in ("prometheus-0", "prometheus-1"):
        wait_targets_up(loaded, pod, expected, every=SCRAPE, only_these=True)
    # every target up on both replicas: `up == 0` holds for none, so the
    # down alerts must be neither pending nor firing after an evaluation
    time.sleep(2 * SCRAPE)
    for pod in ("prometheus-0", "prometheus-1"):
        raised = raised_alerts(loaded, pod, DOWN_ALERTS, "node")
        assert raised == [], f"{pod}: alerts on a healthy cluster: {raised}"
        up = prometheus_api(loaded, pod, "/api/v1/query?query=up%3D%3D0")["data"]["result"]
        assert up == [], f"{pod}: up == 0 for {[r['metric'] for r in up]}"


def test_stopped_apiserver_fires_then_resolves(monitored: tuple[LoadedSite, Receiver]) -> None:
    loaded, receiver = monitored
    # Prometheus must have scraped the API server up once, or `up == 0` from
    # the first scrape would start the for: clock early.
    time.sleep(3 * SCRAPE)
    stopped = time.monotonic()
    assert on(loaded, "controller-1", "systemctl", "stop", "kube-apiserver").returncode == 0
    try:
        fired = receiver.wait_for(
            "firing", "KubeAPIServerDown", "controller-1", stopped, FIRING_WITHIN
        )
    finally:
        started = time.monotonic()
        assert on(loaded, "controller-1", "systemctl", "start", "kube-apiserver").returncode == 0
    assert fired >= FOR  # not before the for: duration
    resolved = receiver.wait_for(
        "resolved", "KubeAPIServerDown", "controller-1", started, RESOLVED_WITHIN
    )
    print(f"firing {fired:.0f} s after the stop, resolved {resolved:.0f} s after the start")

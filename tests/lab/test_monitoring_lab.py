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

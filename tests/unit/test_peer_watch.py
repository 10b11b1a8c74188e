"""peer_watch.py: the pure parts, its probe, and both scripts as the pods run them."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubeprem.addons import cluster_dns, dns
from kubeprem.addons import peer_watch as pw


def _pod(name: str, ip: str, ready: str = "True", ns: str = "kube-system") -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": dns.SELECTOR},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": ready}]},
    }


def test_ready_peers_are_the_other_ready_pods_with_the_label() -> None:
    pods = {
        "items": [
            _pod("cluster-dns-a", "10.200.0.5"),
            _pod("cluster-dns-b", "10.200.1.5"),
            _pod("cluster-dns-c", "10.200.2.5", ready="False"),  # not in the endpoints
            _pod("cluster-dns-d", "10.200.2.6", ns="other"),
            _pod("cluster-dns-e", "pending"),  # no address yet
            {"metadata": {"name": "web", "namespace": "kube-system"}, "status": {}},
        ]
    }
    peers = pw.ready_peers(pods, "kube-system", {"k8s-app": "kube-dns"}, "cluster-dns-a")
    assert peers == [pw.Peer("cluster-dns-b", "uid-cluster-dns-b", "10.200.1.5")]


def test_a_peer_is_dead_after_its_limit_of_misses_in_a_row_only_while_we_answer() -> None:
    a, b = pw.Peer("a", "ua", "10.0.0.1"), pw.Peer("b", "ub", "10.0.0.2")
    misses: dict[str, int] = {}
    assert pw.dead_peers(misses, {a: False, b: True}, True, 3) == []
    assert pw.dead_peers(misses, {a: False, b: False}, True, 3) == []
    # our own server does not answer: nobody is declared dead, the count goes on
    assert pw.dead_peers(misses, {a: False, b: False}, False, 3) == []
    assert pw.dead_peers(misses, {a: False, b: True}, True, 3) == [a]
    assert misses == {"ua": 4, "ub": 0}
    # an answer resets the count; a peer gone from the list is forgotten
    assert pw.dead_peers(misses, {a: True}, True, 3) == []
    assert misses == {"ua": 0}


@pytest.mark.parametrize("text", ["app", "=proxy", "app=", "", "a=b,", "a=b,c"])
def test_a_selector_is_key_equals_value_pairs(text: str) -> None:
    with pytest.raises(ValueError, match=r"KEY=VALUE\[,KEY=VALUE...\]"):
        pw.parse_selector(text)


def test_a_selector_reads_back_as_written() -> None:
    text = "app.kubernetes.io/name=redis,app.kubernetes.io/component=proxy"
    sel = pw.parse_selector(text)
    assert sel == {"app.kubernetes.io/name": "redis", "app.kubernetes.io/component": "proxy"}
    assert pw.selector_text(sel) == text


def test_every_label_of_the_selector_must_match() -> None:
    pod = _pod("p", "10.200.0.9")
    pods = {"items": [pod]}
    assert pw.ready_peers(pods, "kube-system", {"k8s-app": "kube-dns"}, "me") != []
    assert pw.ready_peers(pods, "kube-system", {"k8s-app": "kube-dns", "x": "y"}, "me") == []


def test_tcp_probe_tells_a_listening_port_from_a_closed_one() -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        assert pw.tcp_answers("127.0.0.1", port, timeout=1.0)
    assert not pw.tcp_answers("127.0.0.1", port, timeout=1.0)


class FakeApi:
    def __init__(self) -> None:
        self.calls = 0

    def namespace(self) -> str:
        return "redis"

    def pods(self, namespace: str, selector: dict[str, str]) -> dict[str, Any]:
        self.calls += 1
        return {"items": [], "call": self.calls, "ns": namespace, "selector": selector}


def test_the_pod_list_is_fetched_at_most_every_interval() -> None:
    api = FakeApi()
    listing = pw.Listing(api, {"app": "proxy"}, every=3600)  # type: ignore[arg-type]
    first = listing()
    assert first == {"items": [], "call": 1, "ns": "redis", "selector": {"app": "proxy"}}
    assert listing() is first and api.calls == 1
    listing.every = 0
    assert listing()["call"] == 2


def _copy_as_mounted(tmp_path: Path) -> Path:
    """Both scripts in one folder, as the ConfigMap mounts them."""
    for module in (cluster_dns, pw):
        shutil.copy(str(module.__file__), tmp_path / Path(str(module.__file__)).name)
    return tmp_path


def _run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The script as its pod starts it, isolated from this checkout (``-I``)."""
    return subprocess.run(
        [sys.executable, "-I", str(script), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )


def test_the_dns_controller_imports_peer_watch_from_its_own_folder(tmp_path: Path) -> None:
    folder = _copy_as_mounted(tmp_path)
    # a lookup against a closed port: the script got past its imports and failed
    # the lookup (status 1), not with an ImportError (status 1 with a traceback)
    r = _run(folder / "cluster_dns.py", "lookup", "x.", "127.0.0.1", "9")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.startswith("x.: "), r.stderr


def test_the_sidecar_refuses_a_bad_selector_with_status_2(tmp_path: Path) -> None:
    folder = _copy_as_mounted(tmp_path)
    r = _run(folder / "peer_watch.py", "--selector", "proxy", "--port", "1")
    assert r.returncode == 2
    assert "a selector is KEY=VALUE[,KEY=VALUE...], got 'proxy'" in r.stderr


def _get(server: Any, path: str) -> tuple[int, str]:
    import threading
    import urllib.error
    import urllib.request

    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    finally:
        server.shutdown()
        server.server_close()


def test_the_sidecar_is_healthy_while_its_loop_turns() -> None:
    import time

    assert _get(pw.health_server(0, [time.monotonic()]), "/health") == (
        200,
        "peer loop running\n",
    )
    assert _get(pw.health_server(0, [time.monotonic() - 60]), "/health") == (
        503,
        "peer loop stuck\n",
    )
    assert _get(pw.health_server(0, [time.monotonic()]), "/other")[0] == 404


def test_the_dns_controller_is_not_ready_before_its_first_records() -> None:
    state = cluster_dns.State()
    assert _get(cluster_dns.health_server(0, state, "cluster.local", 9), "/health") == (
        200,
        "sync loop running\n",
    )
    assert _get(cluster_dns.health_server(0, state, "cluster.local", 9), "/ready") == (
        503,
        "no records written yet\n",
    )

"""The chaos probe against a small API server on loopback (TLS with client
certificates from our own PKI): it writes, reads back, records failures
while the server refuses, and recovers when it answers again."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from kubeprem.pki import SeededKeySource, issue_pki
from kubeprem.site import Site
from kubeprem.workflows import chaos


class FakeApi(BaseHTTPRequestHandler):
    store: ClassVar[dict[str, str]] = {}
    failing = threading.Event()

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, doc: object) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict[str, object]:
        n = int(self.headers.get("Content-Length", "0"))
        return dict(json.loads(self.rfile.read(n)))

    def do_PATCH(self) -> None:
        if self.failing.is_set():
            self._send(500, {"message": "etcdserver: leader changed"})
            return
        name = self.path.rsplit("/", 1)[-1]
        body = self._body()
        if name not in self.store:
            self._send(404, {})
            return
        self.store[name] = str(dict(body["data"])["seq"])  # type: ignore[call-overload]
        self._send(200, {})

    def do_POST(self) -> None:
        doc = self._body()
        meta = dict(doc["metadata"])  # type: ignore[call-overload]
        self.store[str(meta["name"])] = str(dict(doc["data"])["seq"])  # type: ignore[call-overload]
        self._send(201, {})

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        self._send(200, {"data": {"seq": self.store.get(name, "")}})
        if self.protocol_version == "HTTP/1.1":
            # kept alive by the headers, then closed without a word, as an
            # API server shutting down closes its idle connections
            self.close_connection = True


@pytest.fixture
def api(tmp_path: Path, example_site: Site) -> Iterator[chaos.ProbeTarget]:
    bundle = issue_pki(example_site, datetime.now(UTC), SeededKeySource())
    files = {
        "ca.crt": bundle.cluster_ca.cert_pem,
        "server.crt": bundle.cert("apiserver").cert_pem,
        "server.key": bundle.cert("apiserver").key_pem.reveal(),
        "admin.crt": bundle.cert("admin").cert_pem,
        "admin.key": bundle.cert("admin").key_pem.reveal(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "ca.crt"))
    ctx.load_cert_chain(str(tmp_path / "server.crt"), str(tmp_path / "server.key"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    FakeApi.store = {}
    FakeApi.failing.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield chaos.ProbeTarget(
            "127.0.0.1",
            server.server_address[1],
            tmp_path / "ca.crt",
            tmp_path / "admin.crt",
            tmp_path / "admin.key",
        )
    finally:
        server.shutdown()
        server.server_close()


def test_probe_writes_reads_and_records_a_failure_span(api: chaos.ProbeTarget) -> None:
    probe = chaos.Probe(api, interval=0.02, timeout=1.0)
    probe.once(1)
    assert FakeApi.store[chaos.PROBE_NAME] == "1"
    probe.start()
    time.sleep(0.3)
    FakeApi.failing.set()
    time.sleep(0.3)
    FakeApi.failing.clear()
    time.sleep(0.3)
    samples = probe.stop()
    spans = chaos.outages(samples)
    assert len(spans) == 1
    assert samples[0].ok and samples[-1].ok
    assert any("HTTP 500" in s.error for s in samples if not s.ok)
    assert int(FakeApi.store[chaos.PROBE_NAME]) == len(samples)


def test_a_kept_alive_connection_the_server_closed_is_retried_once(
    api: chaos.ProbeTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeApi, "protocol_version", "HTTP/1.1")
    # a generous timeout: on a busy machine a TLS handshake can take a second
    probe = chaos.Probe(api, interval=0.02, timeout=10.0)
    probe.once(1)
    probe.once(2)  # its first request meets the closed connection
    assert FakeApi.store[chaos.PROBE_NAME] == "2"

"""The load-balancer configurations against the real programs (Debian packages).

- ``haproxy -c`` accepts the rendered haproxy.cfg. HAProxy loads the CA and
  the health-check client certificate while checking, so the test writes a
  throw-away CA and client PEM to a temporary folder and points the two
  paths there: the only edit to the rendered text, asserted to hit exactly
  those paths.
- The rendered check script, run against a real HAProxy started with that
  configuration, succeeds while HAProxy runs and fails once it stops.
- HAProxy's health check, against a stand-in API server on loopback (HTTPS,
  client certificate required, ``/readyz``): the server is UP when its
  certificate names ``kubernetes`` and chains to the CA, DOWN otherwise.
- ``keepalived -t`` accepts the rendered keepalived.conf. keepalived checks
  that the interface exists and that the track script is present, so the
  site names an interface of this machine and the script path points at the
  rendered script in the temporary folder.
"""

from __future__ import annotations

import datetime as dt
import http.server
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubeprem.components import haproxy, keepalived, paths
from kubeprem.site import Site, example_text, parse_site

pytestmark = pytest.mark.integration

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"


def need(binary: str, package: str) -> None:
    if not Path(binary).exists():
        pytest.skip(f"{binary} is not installed (Debian package {package}; .ci/run installs it)")


def self_signed_pem(tmp: Path) -> tuple[Path, Path]:
    """(CA certificate, client cert+key PEM) good enough for HAProxy to load."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubeprem-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ca = tmp / "ca.crt"
    ca.write_bytes(cert_pem)
    client = tmp / "healthcheck.pem"
    client.write_bytes(cert_pem + key_pem)
    client.chmod(0o600)
    return ca, client


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected {old} exactly once in the rendered text"
    return text.replace(old, new)


def example() -> Site:
    site, _ = parse_site(example_text(), "example.yaml")
    return site


def haproxy_cfg(tmp: Path, *, monitor_port: int | None = None) -> Path:
    """The rendered config, with what this machine lacks swapped out: the
    certificates, the lb machine's address; with ``monitor_port`` also every
    listening port (another HAProxy, such as the loopback cluster's of
    tests/integration/conftest.py, may hold the real ones)."""
    ca, client = self_signed_pem(tmp)
    site = example()
    lb = site.load_balancers[0]
    text = haproxy.config(site, lb)
    text = replace_once(text, paths.CA_CRT, str(ca))
    text = replace_once(text, paths.HAPROXY_HEALTHCHECK_PEM, str(client))
    # the exporter binds the lb machine's own address, absent here
    text = replace_once(
        text, f"bind {lb.address}:{haproxy.METRICS_PORT}", f"bind 127.0.0.1:{free_port()}"
    )
    if monitor_port is not None:
        text = replace_once(
            text, f"bind 127.0.0.1:{haproxy.MONITOR_PORT}", f"bind 127.0.0.1:{monitor_port}"
        )
        text = replace_once(text, f"bind :{site.api.port}", f"bind 127.0.0.1:{free_port()}")
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(text)
    return cfg


def test_haproxy_accepts_config(tmp_path: Path) -> None:
    need(HAPROXY, "haproxy")
    cfg = haproxy_cfg(tmp_path)
    out = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_haproxy_loads_the_certificates_it_names(tmp_path: Path) -> None:
    """Without the substitution the check fails on the missing CA: the check
    above really exercised the certificate paths."""
    need(HAPROXY, "haproxy")
    if Path(paths.CA_CRT).exists():
        pytest.skip(f"{paths.CA_CRT} exists on this machine; nothing to show")
    cfg = tmp_path / "haproxy.cfg"
    site = example()
    cfg.write_text(haproxy.config(site, site.load_balancers[0]))
    out = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert out.returncode != 0
    assert paths.CA_CRT in out.stdout + out.stderr


def port_free(port: int, host: str = "0.0.0.0") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@pytest.fixture
def running_haproxy(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The rendered HAProxy on ports of its own, and its monitor port."""
    need(HAPROXY, "haproxy")
    monitor = free_port()
    cfg = haproxy_cfg(tmp_path, monitor_port=monitor)
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while port_free(monitor, "127.0.0.1"):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            assert time.monotonic() < deadline, "haproxy did not open its monitor port"
            time.sleep(0.1)
        yield proc, monitor
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_check_script_follows_haproxy(
    tmp_path: Path, running_haproxy: tuple[subprocess.Popen[bytes], int]
) -> None:
    proc, monitor = running_haproxy
    script = tmp_path / "check-haproxy.sh"
    # the rendered script, asking this HAProxy's monitor port
    script.write_text(
        replace_once(
            keepalived.check_script(),
            f"/dev/tcp/127.0.0.1/{haproxy.MONITOR_PORT}",
            f"/dev/tcp/127.0.0.1/{monitor}",
        )
    )
    script.chmod(0o755)
    up = subprocess.run([str(script)], capture_output=True, timeout=5)
    assert up.returncode == 0, up.stderr
    proc.terminate()
    proc.wait(timeout=10)
    down = subprocess.run([str(script)], capture_output=True, timeout=5)
    assert down.returncode != 0


def host_interface() -> str:
    names = sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo")
    if "eth0" in names:
        return "eth0"
    if not names:
        pytest.skip("this machine has no network interface but lo; keepalived needs one")
    return names[0]


@pytest.mark.parametrize("machine", ["controller-0", "controller-2"])
def test_keepalived_accepts_config(tmp_path: Path, machine: str) -> None:
    need(KEEPALIVED, "keepalived")
    site_text = example_text().replace("interface: eth0", f"interface: {host_interface()}")
    site, _ = parse_site(site_text, "example.yaml")
    script = tmp_path / "check-haproxy.sh"
    script.write_text(keepalived.check_script())
    script.chmod(0o755)
    text = keepalived.config(site, site.machine(machine))
    cfg = tmp_path / "keepalived.conf"
    cfg.write_text(replace_once(text, keepalived.CHECK_SCRIPT, str(script)))
    out = subprocess.run([KEEPALIVED, "-t", "-f", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout + out.stderr == "", out.stdout + out.stderr  # no warnings either


def test_keepalived_test_rejects_vrrp2_with_subsecond_adverts(tmp_path: Path) -> None:
    """The config test is strict enough to matter: it flags what VRRPv3 is for."""
    need(KEEPALIVED, "keepalived")
    site_text = example_text().replace("interface: eth0", f"interface: {host_interface()}")
    site, _ = parse_site(site_text, "example.yaml")
    script = tmp_path / "check-haproxy.sh"
    script.write_text(keepalived.check_script())
    script.chmod(0o755)
    text = keepalived.config(site, site.machine("controller-0"))
    text = replace_once(text, keepalived.CHECK_SCRIPT, str(script))
    cfg = tmp_path / "keepalived.conf"
    cfg.write_text(replace_once(text, "vrrp_version 3", "vrrp_version 2"))
    out = subprocess.run([KEEPALIVED, "-t", "-f", str(cfg)], capture_output=True, text=True)
    assert out.returncode != 0


def issue(
    tmp: Path,
    name: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    sans: list[str],
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    crt, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, key_path


class Readyz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("sans", "state", "check"),
    [
        (["kubernetes"], "UP", "L7OK"),  # HTTP 200 from /readyz over verified TLS
        (["elsewhere"], "DOWN", "L6"),  # TLS refused: the name is not kubernetes
    ],
)
def test_haproxy_health_check_against_a_tls_readyz(
    tmp_path: Path, sans: list[str], state: str, check: str
) -> None:
    need(HAPROXY, "haproxy")
    ca_pem, _ = self_signed_pem(tmp_path)
    ca_cert = x509.load_pem_x509_certificate(ca_pem.read_bytes())
    ca_key = serialization.load_pem_private_key((tmp_path / "healthcheck.pem").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    srv_crt, srv_key = issue(tmp_path, "apiserver", ca_key, ca_cert, sans)
    cl_crt, cl_key = issue(tmp_path, "client", ca_key, ca_cert, [])
    client_pem = tmp_path / "client.pem"
    client_pem.write_bytes(cl_crt.read_bytes() + cl_key.read_bytes())

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(srv_crt, srv_key)
    tls.load_verify_locations(ca_pem)
    tls.verify_mode = ssl.CERT_REQUIRED  # like the API server with anonymous auth off
    server = http.server.HTTPServer(("127.0.0.1", 0), Readyz)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    site = example()
    lb = site.load_balancers[0]
    text = haproxy.config(site, lb)
    text = replace_once(text, paths.CA_CRT, str(ca_pem))
    text = replace_once(text, paths.HAPROXY_HEALTHCHECK_PEM, str(client_pem))
    # one backend, the stand-in; free ports instead of the site's
    first = site.controllers[0]
    text = replace_once(
        text,
        f"server {first.name} {first.address}:{site.api.apiserver_port}",
        f"server {first.name} 127.0.0.1:{server.server_address[1]}",
    )
    text = re.sub(r"^    server controller-[12] .*\n", "", text, flags=re.M)
    monitor = free_port()
    text = replace_once(text, f"127.0.0.1:{haproxy.MONITOR_PORT}", f"127.0.0.1:{monitor}")
    text = replace_once(text, f"bind :{site.api.port}", f"bind 127.0.0.1:{free_port()}")
    metrics = free_port()
    text = replace_once(
        text, f"bind {lb.address}:{haproxy.METRICS_PORT}", f"bind 127.0.0.1:{metrics}"
    )
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        seen = ""
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            try:
                url = f"http://127.0.0.1:{monitor}{haproxy.STATS_URI};csv"
                with urllib.request.urlopen(url, timeout=2) as r:
                    lines = r.read().decode().splitlines()
                header = lines[0].removeprefix("# ").split(",")
                rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]
                row = next(x for x in rows if x["svname"] == first.name)
                seen = f"{row['status']} {row['check_status']}"
            except OSError:
                seen = ""
            if seen.startswith(state) and seen.split()[-1].startswith(check):
                break
            time.sleep(0.5)
        assert seen.startswith(state), f"server {seen!r}, expected {state} {check}"
        assert seen.split()[-1].startswith(check), f"server {seen!r}, expected {state} {check}"
        # the built-in Prometheus exporter answers on the metrics frontend
        url = f"http://127.0.0.1:{metrics}{haproxy.METRICS_PATH}"
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read().decode()
        assert "\nhaproxy_process_start_time_seconds " in body
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

"""The load-balancer configurations against the real programs (Debian packages).

- ``haproxy -c`` accepts the rendered haproxy.cfg. HAProxy loads the CA and
  the health-check client certificate while checking, so the test writes a
  throw-away CA and client PEM to a temporary folder and points the two
  paths there: the only edit to the rendered text, asserted to hit exactly
  those paths.
- The rendered check script, run against a real HAProxy started with that
  configuration, succeeds while HAProxy runs and fails once it stops.
- ``keepalived -t`` accepts the rendered keepalived.conf. keepalived checks
  that the interface exists and that the track script is present, so the
  site names an interface of this machine and the script path points at the
  rendered script in the temporary folder.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import time
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


def haproxy_cfg(tmp: Path) -> Path:
    ca, client = self_signed_pem(tmp)
    text = haproxy.config(example())
    text = replace_once(text, paths.CA_CRT, str(ca))
    text = replace_once(text, paths.HAPROXY_HEALTHCHECK_PEM, str(client))
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
    cfg.write_text(haproxy.config(example()))
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
def running_haproxy(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    need(HAPROXY, "haproxy")
    site = example()
    for port in (site.api.port, haproxy.MONITOR_PORT):
        if not port_free(port):
            pytest.skip(f"port {port} is in use on this machine; the rendered config binds it")
    cfg = haproxy_cfg(tmp_path)
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while port_free(haproxy.MONITOR_PORT, "127.0.0.1"):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            assert time.monotonic() < deadline, "haproxy did not open its monitor port"
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_check_script_follows_haproxy(
    tmp_path: Path, running_haproxy: subprocess.Popen[bytes]
) -> None:
    script = tmp_path / "check-haproxy.sh"
    script.write_text(keepalived.check_script())
    script.chmod(0o755)
    up = subprocess.run([str(script)], capture_output=True, timeout=5)
    assert up.returncode == 0, up.stderr
    running_haproxy.terminate()
    running_haproxy.wait(timeout=10)
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

"""Every certificate chain verifies with the real `openssl verify`, for the
purpose it is meant for, and openssl reads the subjects and SANs we expect."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeprem.pki import PkiBundle, SeededKeySource, SystemKeySource, ensure_pki
from kubeprem.pki.certs import required_certs
from kubeprem.pki.store import pki_dir
from kubeprem.site import LoadedSite, example_text, load_site

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedSite, PkiBundle]:
    site = tmp_path_factory.mktemp("pki") / "site.yaml"
    site.write_text(example_text(), encoding="utf-8")
    loaded = load_site(str(site))
    _, bundle = ensure_pki(loaded, datetime.now(UTC), SystemKeySource())
    return loaded, bundle


def openssl(*args: str) -> str:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"openssl {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def test_every_chain_verifies(store: tuple[LoadedSite, PkiBundle]) -> None:
    loaded, _ = store
    folder = pki_dir(loaded)
    specs = required_certs(loaded.site)
    assert specs
    for spec in specs:
        ca = folder / f"{spec.ca}.crt"
        crt = folder / f"{spec.id}.crt"
        for purpose, wanted in (("sslserver", spec.server), ("sslclient", spec.client)):
            if wanted:
                out = openssl("verify", "-CAfile", str(ca), "-purpose", purpose, str(crt))
                assert out.strip() == f"{crt}: OK"
    for ca_id in ("ca", "etcd/ca", "front-proxy-ca"):
        ca = folder / f"{ca_id}.crt"
        assert openssl("verify", "-CAfile", str(ca), str(ca)).strip().endswith("OK")


def test_wrong_ca_is_refused(store: tuple[LoadedSite, PkiBundle]) -> None:
    folder = pki_dir(store[0])
    proc = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(folder / "ca.crt"),
            str(folder / "apiserver-etcd-client.crt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0


def test_client_cert_is_not_a_server_cert(store: tuple[LoadedSite, PkiBundle]) -> None:
    folder = pki_dir(store[0])
    proc = subprocess.run(
        ["openssl", "verify", "-CAfile", str(folder / "ca.crt"), "-purpose", "sslserver",
         str(folder / "admin.crt")],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0


def test_openssl_reads_subjects_and_sans(store: tuple[LoadedSite, PkiBundle]) -> None:
    folder = pki_dir(store[0])
    text = openssl("x509", "-noout", "-subject", "-ext", "subjectAltName,extendedKeyUsage",
                   "-in", str(folder / "apiserver.crt"))  # fmt: skip
    assert "CN = kube-apiserver" in text or "CN=kube-apiserver" in text
    for name in ("DNS:kubernetes.default.svc.cluster.local", "DNS:controller-2",
                 "IP Address:10.240.0.100", "IP Address:10.32.0.1", "IP Address:127.0.0.1",
                 "TLS Web Server Authentication"):  # fmt: skip
        assert name in text
    text = openssl(
        "x509", "-noout", "-subject", "-in", str(folder / "kubelet/worker-0/kubelet-client.crt")
    )
    assert "system:nodes" in text and "system:node:worker-0" in text


def test_keys_match_certificates(store: tuple[LoadedSite, PkiBundle]) -> None:
    folder = pki_dir(store[0])
    for crt in sorted(folder.rglob("*.crt")):
        key = crt.with_suffix(".key")
        cert_pub = openssl("x509", "-noout", "-pubkey", "-in", str(crt))
        key_pub = openssl("pkey", "-pubout", "-in", str(key))
        assert cert_pub == key_pub, crt
    sa_pub = openssl("pkey", "-pubout", "-in", str(folder / "sa.key"))
    assert sa_pub == (folder / "sa.pub").read_text()


def test_seeded_pki_also_verifies(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(example_text(), encoding="utf-8")
    loaded = load_site(str(site))
    ensure_pki(loaded, datetime.now(UTC), SeededKeySource())
    folder = pki_dir(loaded)
    openssl(
        "verify", "-CAfile", str(folder / "etcd/ca.crt"), str(folder / "etcd/controller-0/peer.crt")
    )

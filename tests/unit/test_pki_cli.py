"""`kubeprem pki SITE` and `kubeprem pki check SITE`: output and exit status."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kubeprem.cli.main import main
from kubeprem.pki import SeededKeySource, ensure_pki
from kubeprem.pki.store import pki_dir, read_store
from kubeprem.site import example_text, load_site


@pytest.fixture
def site_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COLUMNS", "250")  # one table row per certificate
    path = tmp_path / "site.yaml"
    path.write_text(example_text(), encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out + err


def secrets_in(folder: Path) -> list[str]:
    """Every secret's text as it could leak: PEM bodies and base64 key material."""
    found = []
    for rel, data in read_store(folder).items():
        if rel.endswith(".key"):
            body = b"".join(data.splitlines()[1:-1]).decode()
            found += [body[i : i + 24] for i in range(0, len(body) - 24, 24)]
    enc = (folder / "encryption-config.yaml").read_text()
    found += re.findall(r"secret: (\S+)", enc)
    return found


def test_pki_then_check(site_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(capsys, "pki", str(site_file))
    assert status == 0
    assert "created" in out and "41" in out and str(site_file.parent / ".kubeprem") in out
    status, out = run(capsys, "pki", str(site_file))
    assert status == 0 and re.search(r"│\s+0 │\s+41 │\s+0 │", out)
    status, out = run(capsys, "pki", "check", str(site_file))
    assert status == 0
    assert "CN=kube-apiserver" in out and "kubernetes-admin" in out
    folder = site_file.parent / ".kubeprem" / "kubeprem" / "pki"
    assert len(secrets_in(folder)) > 100
    for output in [out, *run(capsys, "pki", str(site_file))[1:]]:
        assert "PRIVATE KEY" not in output
        assert not [s for s in secrets_in(folder) if s in output]
        assert base64.b64encode(b"-----BEGIN").decode()[:12] not in output


def test_check_exit_1_when_expired(site_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=400)
    ensure_pki(load_site(str(site_file)), long_ago, SeededKeySource())
    status, out = run(capsys, "pki", "check", str(site_file))
    assert status == 1
    assert "expired" in out and "apiserver" in out


def test_check_without_pki(site_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(capsys, "pki", "check", str(site_file))
    assert status == 1 and "run `kubeprem pki" in out


def test_bad_arguments(site_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(capsys, "pki", "renew", "x", str(site_file))
    assert status == 2 and "usage" in out
    assert not pki_dir(load_site(str(site_file))).exists()
    with pytest.raises(SystemExit) as exc:
        main(["pki"])
    assert exc.value.code == 2


def test_missing_site_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _ = run(capsys, "pki", str(tmp_path / "nope.yaml"))
    assert status == 2

"""The PKI state folder: created once, then reused byte for byte; a new machine
gets only its own certificates; a changed VIP reissues the API server's."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kubeprem.errors import OperationError
from kubeprem.pki import SeededKeySource, ensure_pki, load_pki
from kubeprem.pki.certs import cert_sans
from kubeprem.pki.store import pki_dir, read_store
from kubeprem.site import LoadedSite, example_text, load_site

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=40)

NEW_WORKER = """  - name: worker-3
    address: 10.240.0.23
    roles: [worker]
encryption:"""


def write_site(tmp_path: Path, text: str | None = None) -> LoadedSite:
    path = tmp_path / "site.yaml"
    path.write_text(text if text is not None else example_text(), encoding="utf-8")
    return load_site(str(path))


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedSite:
    return write_site(tmp_path)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        rel: (data, (folder / rel).stat().st_mtime_ns) for rel, data in read_store(folder).items()
    }


def test_first_run_creates_everything(loaded: LoadedSite) -> None:
    report, bundle = ensure_pki(loaded, NOW, SeededKeySource())
    assert report.count("kept") == report.count("reissued") == 0
    assert report.count("created") == len(report.changes) > 30
    assert report.state_dir == loaded.state_dir / "pki"
    assert bundle.encryption is not None


def test_rerun_changes_nothing(loaded: LoadedSite) -> None:
    ensure_pki(loaded, NOW, SeededKeySource("one"))
    before = snapshot(pki_dir(loaded))
    report, _ = ensure_pki(loaded, LATER, SeededKeySource("two"))
    assert report.count("created") == report.count("reissued") == 0
    assert not report.changed
    assert snapshot(pki_dir(loaded)) == before  # same bytes, not even rewritten


def test_modes(loaded: LoadedSite) -> None:
    ensure_pki(loaded, NOW, SeededKeySource())
    folder = pki_dir(loaded)
    for path in [folder, *folder.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        elif path.suffix in (".key", ".conf") or path.name == "encryption-config.yaml":
            assert mode == 0o600, path
        else:
            assert mode == 0o644, path
    assert stat.S_IMODE(loaded.state_dir.stat().st_mode) == 0o700
    assert not [p for p in folder.rglob(".tmp-*")]


def test_loose_key_mode_is_tightened(loaded: LoadedSite) -> None:
    ensure_pki(loaded, NOW, SeededKeySource())
    key = pki_dir(loaded) / "admin.key"
    os.chmod(key, 0o644)
    ensure_pki(loaded, NOW, SeededKeySource())
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_added_machine_gets_only_its_certificates(tmp_path: Path) -> None:
    first = write_site(tmp_path)
    ensure_pki(first, NOW, SeededKeySource("one"))
    before = read_store(pki_dir(first))
    grown = write_site(tmp_path, example_text().replace("encryption:", NEW_WORKER, 1))
    report, bundle = ensure_pki(grown, LATER, SeededKeySource("two"))
    assert sorted(report.items("created")) == [
        "kubeconfig/kubelet-worker-3.conf",
        "kubelet/worker-3/kubelet",
        "kubelet/worker-3/kubelet-client",
    ]
    assert report.count("reissued") == 0
    after = read_store(pki_dir(grown))
    assert {k: v for k, v in after.items() if k in before} == before
    assert bundle.kubelet_serving(grown.site.machine("worker-3")).cert.not_valid_before_utc < LATER


def test_vip_change_reissues_what_names_it(tmp_path: Path) -> None:
    first = write_site(tmp_path)
    ensure_pki(first, NOW, SeededKeySource("one"))
    before = read_store(pki_dir(first))
    moved = write_site(tmp_path, example_text().replace("vip: 10.240.0.100", "vip: 10.240.0.99"))
    report, bundle = ensure_pki(moved, LATER, SeededKeySource("two"))
    assert report.items("reissued") == [
        "apiserver",
        "kubeconfig/admin.conf",
        "kubeconfig/kube-proxy.conf",
        "kubeconfig/kubelet-worker-0.conf",
        "kubeconfig/kubelet-worker-1.conf",
        "kubeconfig/kubelet-worker-2.conf",
    ]
    reason = next(c.reason for c in report.changes if c.item == "apiserver")
    assert "10.240.0.99" in reason and "10.240.0.100" in reason
    _, ips = cert_sans(bundle.cert("apiserver").cert)
    assert "10.240.0.99" in map(str, ips) and "10.240.0.100" not in map(str, ips)
    after = read_store(pki_dir(moved))
    assert after["ca.key"] == before["ca.key"]
    assert after["apiserver.key"] != before["apiserver.key"]
    assert after["admin.crt"] == before["admin.crt"]
    assert "10.240.0.99:8443" in bundle.kubeconfig("admin").reveal()


def test_new_ca_reissues_its_leaves(loaded: LoadedSite) -> None:
    ensure_pki(loaded, NOW, SeededKeySource("one"))
    folder = pki_dir(loaded)
    (folder / "front-proxy-ca.crt").unlink()
    (folder / "front-proxy-ca.key").unlink()
    report, _ = ensure_pki(loaded, NOW, SeededKeySource("two"))
    assert report.items("created") == ["front-proxy-ca"]
    assert report.items("reissued") == ["front-proxy-client"]


def test_missing_ca_key_is_an_error_not_a_new_ca(loaded: LoadedSite) -> None:
    ensure_pki(loaded, NOW, SeededKeySource())
    (pki_dir(loaded) / "ca.key").unlink()
    with pytest.raises(OperationError, match=r"ca\.key is missing"):
        ensure_pki(loaded, NOW, SeededKeySource())


def test_missing_leaf_key_reissues(loaded: LoadedSite) -> None:
    ensure_pki(loaded, NOW, SeededKeySource())
    (pki_dir(loaded) / "etcd/controller-1/peer.key").unlink()
    report, _ = ensure_pki(loaded, NOW, SeededKeySource("b"))
    assert report.items("reissued") == ["etcd/controller-1/peer"]


def test_encryption_key_is_kept(loaded: LoadedSite) -> None:
    _, one = ensure_pki(loaded, NOW, SeededKeySource("one"))
    _, two = ensure_pki(loaded, LATER, SeededKeySource("two"))
    assert one.encryption == two.encryption


def test_encryption_off(tmp_path: Path) -> None:
    off = write_site(tmp_path, example_text().replace("at_rest: true", "at_rest: false"))
    report, bundle = ensure_pki(off, NOW, SeededKeySource())
    assert bundle.encryption is None and bundle.encryption_config is None
    assert not (pki_dir(off) / "encryption-config.yaml").exists()
    assert "encryption-config" not in [c.item for c in report.changes]


def test_load_pki(loaded: LoadedSite, tmp_path: Path) -> None:
    with pytest.raises(OperationError, match="run `kubeprem pki"):
        load_pki(loaded, NOW)
    _, made = ensure_pki(loaded, NOW, SeededKeySource())
    assert load_pki(loaded, LATER).cert("apiserver").cert_pem == made.cert("apiserver").cert_pem
    moved = write_site(tmp_path, example_text().replace("vip: 10.240.0.100", "vip: 10.240.0.99"))
    with pytest.raises(OperationError, match="does not match the site"):
        load_pki(moved, NOW)


def test_removed_machine_is_reported_unused(tmp_path: Path) -> None:
    grown = write_site(tmp_path, example_text().replace("encryption:", NEW_WORKER, 1))
    ensure_pki(grown, NOW, SeededKeySource())
    report, _ = ensure_pki(write_site(tmp_path), NOW, SeededKeySource())
    assert report.unused == ("kubelet/worker-3/kubelet", "kubelet/worker-3/kubelet-client")
    assert not report.changed


def test_unreadable_sa_key_is_an_error(loaded: LoadedSite) -> None:
    ensure_pki(loaded, NOW, SeededKeySource())
    (pki_dir(loaded) / "sa.key").write_bytes(b"garbage")
    with pytest.raises(OperationError, match=r"sa\.key is unreadable"):
        ensure_pki(loaded, NOW, SeededKeySource())

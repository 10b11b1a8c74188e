"""Restore and backup command sequences against fake hosts: the order that
keeps a restore safe, and what a backup leaves on the operator's machine."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeprem.errors import OperationError
from kubeprem.pki.store import ensure_pki
from kubeprem.site import LoadedSite, example_text, load_site
from kubeprem.transport.fake import FakeFile, FakeTransport
from kubeprem.workflows import backup, restore
from kubeprem.workflows.gates import ETCDCTL, ETCDUTL

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
SNAPSHOT = b"etcd-snapshot-bytes" * 1000


def loaded_site(tmp_path: Path) -> LoadedSite:
    path = tmp_path / "site.yaml"
    path.write_text(example_text())
    return load_site(path, check_files=False)


Log = list[tuple[str, tuple[str, ...]]]


def recording_hosts(loaded: LoadedSite, log: Log) -> dict[str, FakeTransport]:
    """Fake machines that answer every command restore sends, logging it in
    one list shared by all hosts (so the order across machines shows)."""

    def make(name: str) -> FakeTransport:
        fake = FakeTransport(name)

        def record(
            f: FakeTransport, argv: tuple[str, ...], stdin: bytes | None
        ) -> tuple[int, str, str]:
            log.append((f.name, argv))
            if argv[0] == "sha256sum":
                data = f.files[argv[1]].content if argv[1] in f.files else b""
                return 0, f"{hashlib.sha256(data).hexdigest()}  {argv[1]}\n", ""
            if argv[0] == "systemctl" and argv[1] == "is-active":
                return 3, "inactive\n" * (len(argv) - 2), ""
            if argv[0] == ETCDCTL and "health" in argv:
                return 0, "", "is healthy\n" * 3
            return 0, "{}", ""

        for prefix in (
            "systemctl",
            "sha256sum",
            "rm",
            "mv",
            "chmod",
            ETCDCTL,
            ETCDUTL,
            "/usr/local/bin/kubectl",
        ):
            fake.handle((prefix,), record)
        return fake

    return {m.name: make(m.name) for m in loaded.site.machines}


def run_restore(tmp_path: Path) -> tuple[LoadedSite, Log]:
    loaded = loaded_site(tmp_path)
    snap = tmp_path / "snap.db"
    snap.write_bytes(SNAPSHOT)
    log: Log = []
    hosts = recording_hosts(loaded, log)
    asyncio.run(restore.restore(loaded, hosts, snap, NOW))
    return loaded, log


def index(log: Log, pred: object) -> list[int]:
    return [i for i, (h, a) in enumerate(log) if pred(h, a)]  # type: ignore[operator]


def test_restore_stops_everything_before_restoring_and_starts_etcd_before_the_api(
    tmp_path: Path,
) -> None:
    loaded, log = run_restore(tmp_path)
    site = loaded.site
    cp_stop = index(log, lambda h, a: a[:3] == ("systemctl", "stop", "--no-block"))
    etcd_stop = index(log, lambda h, a: a == ("systemctl", "stop", "etcd"))
    restores = index(log, lambda h, a: a[:3] == (ETCDUTL, "snapshot", "restore"))
    etcd_start = index(log, lambda h, a: a == ("systemctl", "start", "--no-block", "etcd"))
    cp_start = index(
        log, lambda h, a: a[:3] == ("systemctl", "start", "--no-block") and "kube-apiserver" in a
    )
    agents = index(log, lambda h, a: a[:2] == ("systemctl", "restart"))
    assert {log[i][0] for i in cp_stop} == {m.name for m in site.controllers}
    assert {log[i][0] for i in etcd_stop} == {m.name for m in site.etcd_members}
    assert len(restores) == len(etcd_start) == 3 and len(cp_start) == 3
    assert max(cp_stop) < min(etcd_stop)  # nothing writes while etcd goes back
    assert max(etcd_stop) < min(restores)  # no member replicates the present
    assert max(restores) < min(etcd_start)
    assert max(etcd_start) < min(cp_start)
    assert {log[i][0] for i in agents} == {m.name for m in site.workers}
    assert min(agents) > max(cp_start)


def test_each_member_is_restored_with_its_own_name_and_peer_url(tmp_path: Path) -> None:
    loaded, log = run_restore(tmp_path)
    for host, argv in log:
        if argv[:3] == (ETCDUTL, "snapshot", "restore"):
            m = loaded.site.machine(host)
            assert f"--name={host}" in argv
            assert f"--initial-advertise-peer-urls=https://{m.address}:2380" in argv
            assert f"--data-dir={restore.RESTORE_DIR}" in argv
            assert "--initial-cluster-token=kubeprem" in argv
            cluster = next(a for a in argv if a.startswith("--initial-cluster="))
            assert cluster.count("=https://") == 3


def test_old_data_directory_is_kept_and_the_restored_one_swapped_in(tmp_path: Path) -> None:
    _, log = run_restore(tmp_path)
    moves = [a for h, a in log if h == "controller-0" and a[0] == "mv"]
    assert moves == [
        ("mv", "/var/lib/etcd", "/var/lib/etcd.before-restore-20261126T120000Z"),
        ("mv", restore.RESTORE_DIR, "/var/lib/etcd"),
    ]


def test_a_bad_copy_leaves_the_cluster_running(tmp_path: Path) -> None:
    loaded = loaded_site(tmp_path)
    snap = tmp_path / "snap.db"
    snap.write_bytes(SNAPSHOT)
    log: Log = []
    hosts = recording_hosts(loaded, log)
    hosts["controller-1"].fail_command(["sha256sum"], status=1, stderr="I/O error")
    with pytest.raises(OperationError):
        asyncio.run(restore.restore(loaded, hosts, snap, NOW))
    assert not [a for _, a in log if a[:2] == ("systemctl", "stop")]


def test_too_small_a_snapshot_is_refused_before_any_command(tmp_path: Path) -> None:
    loaded = loaded_site(tmp_path)
    snap = tmp_path / "snap.db"
    snap.write_bytes(b"x")
    log: Log = []
    with pytest.raises(OperationError, match="too small"):
        asyncio.run(restore.restore(loaded, recording_hosts(loaded, log), snap, NOW))
    assert log == []


# -- backup --------------------------------------------------------------------------


def snapshot_host(name: str, *, healthy: bool) -> FakeTransport:
    fake = FakeTransport(name)
    status = {"hash": 123, "revision": 42, "totalKey": 7, "totalSize": len(SNAPSHOT)}

    def etcdctl(
        f: FakeTransport, argv: tuple[str, ...], stdin: bytes | None
    ) -> tuple[int, str, str]:
        if "health" in argv:
            return (0, "", "is healthy") if healthy else (1, "", "unhealthy")
        if "save" in argv:
            f.files[argv[-1]] = FakeFile(SNAPSHOT)
            return 0, "", "Snapshot saved"
        if "status" in argv:
            return 0, json.dumps(status), ""
        return 1, "", "?"

    def b64(f: FakeTransport, argv: tuple[str, ...], stdin: bytes | None) -> tuple[int, str, str]:
        return 0, base64.b64encode(f.files[argv[-1]].content).decode(), ""

    def sha(f: FakeTransport, argv: tuple[str, ...], stdin: bytes | None) -> tuple[int, str, str]:
        return 0, hashlib.sha256(f.files[argv[-1]].content).hexdigest() + "  x\n", ""

    def ok(f: FakeTransport, argv: tuple[str, ...], stdin: bytes | None) -> tuple[int, str, str]:
        if argv[0] == "rm":
            for p in argv[2:]:
                f.files.pop(p, None)
        return 0, "", ""

    fake.handle((ETCDCTL,), etcdctl)
    fake.handle((ETCDUTL,), etcdctl)  # snapshot status from etcd 3.6
    fake.handle(("base64",), b64)
    fake.handle(("sha256sum",), sha)
    fake.handle(("install",), ok)
    fake.handle(("rm",), ok)
    return fake


def test_backup_takes_the_snapshot_on_a_healthy_member_and_keeps_pki(tmp_path: Path) -> None:
    loaded = loaded_site(tmp_path)
    ensure_pki(loaded, NOW)
    hosts = {
        "controller-0": snapshot_host("controller-0", healthy=False),
        "controller-1": snapshot_host("controller-1", healthy=True),
        "controller-2": snapshot_host("controller-2", healthy=True),
    }
    taken = asyncio.run(backup.take_backup(loaded, hosts, NOW))
    assert taken.member == "controller-1"
    assert taken.folder.name == "20261126T120000Z"
    assert taken.snapshot.read_bytes() == SNAPSHOT
    assert taken.status.revision == 42
    assert oct(taken.snapshot.stat().st_mode & 0o777) == "0o600"
    manifest = json.loads((taken.folder / backup.MANIFEST).read_text())
    assert manifest["sha256"] == hashlib.sha256(SNAPSHOT).hexdigest()
    with tarfile.open(taken.folder / backup.PKI_ARCHIVE) as tar:
        names = tar.getnames()
    assert "ca.key" in names and "encryption-config.yaml" in names
    assert not [p for p in hosts["controller-1"].files if p.startswith(backup.REMOTE_TMP)]
    assert backup.resolve_snapshot(loaded, "latest") == taken.snapshot


def test_no_healthy_member_means_no_backup(tmp_path: Path) -> None:
    loaded = loaded_site(tmp_path)
    hosts = {m.name: snapshot_host(m.name, healthy=False) for m in loaded.site.etcd_members}
    with pytest.raises(OperationError, match="no healthy etcd member"):
        asyncio.run(backup.take_backup(loaded, hosts, NOW))


def test_parse_snapshot_status() -> None:
    st = backup.parse_snapshot_status(
        '{"hash":3792301574,"revision":699,"totalKey":713,"totalSize":733216}'
    )
    assert (st.revision, st.total_keys, st.total_size) == (699, 713, 733216)
    with pytest.raises(OperationError):
        backup.parse_snapshot_status("Error: bad file")


def test_timer_every_six_hours_keeps_ten() -> None:
    r = backup.timer_files()
    files = {f.path: f.content.decode() for f in r.files}
    timer = files[f"/etc/systemd/system/{backup.TIMER_UNIT}"]
    assert "OnCalendar=*-*-* 00/6:00:00" in timer and "Persistent=true" in timer
    script = files[backup.TIMER_SCRIPT]
    assert "tail -n +11" in script and "snapshot status" in script
    assert r.services == (backup.TIMER_UNIT,)
    with pytest.raises(OperationError):
        backup.timer_files(every_hours=0)


def test_install_timer_writes_enables_and_then_converges(tmp_path: Path) -> None:
    loaded = loaded_site(tmp_path)
    hosts = {m.name: FakeTransport(m.name) for m in loaded.site.machines}
    first = asyncio.run(backup.install_timer(loaded.site, hosts))
    assert first is not None
    c0 = hosts["controller-0"]
    assert backup.TIMER_SCRIPT in c0.files
    assert c0.services[backup.TIMER_UNIT].enabled == "enabled"
    assert not hosts["worker-0"].calls  # workers hold no etcd
    assert asyncio.run(backup.install_timer(loaded.site, hosts)) is None


def test_snapshots_are_checked_and_restored_by_the_tool_of_the_sites_etcd() -> None:
    from tests.conftest import site_with_version

    for version, tool in (("1.20.2", ETCDCTL), ("1.37.2", ETCDUTL)):  # etcd 3.4, 3.6
        site = site_with_version(version)
        assert restore.restore_argv(site, site.etcd_members[0])[:3] == [tool, "snapshot", "restore"]
        assert f"'{tool}' snapshot status" in backup.timer_script(3, tool)

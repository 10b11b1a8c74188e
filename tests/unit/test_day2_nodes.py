"""Node removal/addition rules, what reset removes, and the day-2 command line."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeprem.cli.main import main
from kubeprem.errors import InputError, OperationError
from kubeprem.pki import SeededKeySource, issue_pki
from kubeprem.site import Site, example_text
from kubeprem.transport.fake import FakeTransport
from kubeprem.workflows import nodes, reset
from kubeprem.workflows.backup import TIMER_UNIT

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def test_reset_plan_stops_agents_before_etcd_and_removes_binaries(example_site: Site) -> None:
    bundle = issue_pki(example_site, NOW, SeededKeySource())
    c0, w0 = reset.reset_plans(example_site, bundle, ["controller-0", "worker-0"])
    assert c0.services[0] == TIMER_UNIT
    assert c0.services.index("kube-apiserver.service") < c0.services.index("etcd.service")
    assert "/usr/local/bin/etcd" in c0.files and "/etc/systemd/system/etcd.service" in c0.files
    assert "/usr/local/bin/kubelet" not in c0.files
    assert "/opt/cni/bin/bridge" in w0.files and "/usr/local/bin/kubelet" in w0.files
    assert "kubelet.service" in w0.services and TIMER_UNIT not in w0.services
    assert "/var/lib/etcd" in c0.folders and "/var/lib/kubelet" in w0.folders


def test_reset_machine_runs_stop_clean_remove_reload(example_site: Site) -> None:
    bundle = issue_pki(example_site, NOW, SeededKeySource())
    (plan,) = reset.reset_plans(example_site, bundle, ["worker-1"])
    fake = FakeTransport("worker-1")
    seen: list[tuple[str, ...]] = []

    def ok(f: FakeTransport, argv: tuple[str, ...], stdin: bytes | None) -> tuple[int, str, str]:
        seen.append(argv)
        return 0, "", ""

    for prefix in ("systemctl", "sh", "rm", "nft"):
        fake.handle((prefix,), ok)
    asyncio.run(reset.reset_machine(fake, plan))
    stops = [a for a in seen if a[:3] == ("systemctl", "disable", "--now")]
    assert len(stops) == len(plan.services)
    kinds = [a[0] if a[0] != "systemctl" else a[1] for a in seen]
    assert kinds.index("sh") > max(i for i, k in enumerate(kinds) if k == "disable")
    assert kinds[-1] == "daemon-reload"
    script = next(a for a in seen if a[0] == "sh")
    assert "/var/lib/kubelet" in script and script[3] == "kubeprem-reset"


def test_member_id_from_member_list() -> None:
    doc = {"members": [{"ID": 1311, "name": "controller-0"}, {"ID": 255, "name": "controller-1"}]}
    assert nodes.member_id(json.dumps(doc), "controller-1") == "ff"
    assert nodes.member_id(json.dumps(doc), "controller-9") is None


def test_add_may_change_only_the_machine_and_the_load_balancers(example_site: Site) -> None:
    nodes.check_add(example_site, "worker-2", ["worker-2", "controller-0"])
    with pytest.raises(OperationError, match="worker-0"):
        nodes.check_add(example_site, "worker-2", ["worker-2", "worker-0"])
    # a controller's add changes every machine (firewall, --etcd-servers, peers)
    nodes.check_add(example_site, "controller-1", ["controller-1", "worker-0", "controller-0"])


MEMBERS = {
    "members": [
        {"ID": 1, "name": "controller-0", "peerURLs": ["https://10.240.0.10:2380"]},
        {"ID": 2, "name": "controller-1", "peerURLs": ["https://10.240.0.11:2380"]},
        # added, never started: etcd lists it without a name
        {"ID": 3, "peerURLs": ["https://10.240.0.13:2380"]},
    ]
}


def test_member_state_from_member_list() -> None:
    listing = json.dumps(MEMBERS)
    assert nodes.member_state(listing, "controller-1", "https://10.240.0.11:2380") == "started"
    assert nodes.member_state(listing, "controller-3", "https://10.240.0.13:2380") == "added"
    assert nodes.member_state(listing, "controller-2", "https://10.240.0.12:2380") == "absent"
    # the name or the peer URL taken by another member
    assert nodes.member_state(listing, "controller-1", "https://10.240.0.19:2380") == "conflict"
    assert nodes.member_state(listing, "controller-9", "https://10.240.0.10:2380") == "conflict"


def test_joined_members_are_recorded_atomically_and_read_back(tmp_path: Path) -> None:
    from kubeprem.site import load_site

    site = tmp_path / "site.yaml"
    site.write_text(example_text())
    loaded = load_site(site)
    assert nodes.joined(loaded) == frozenset()
    loaded.state_dir.mkdir(parents=True)
    nodes.record_joined(loaded, "controller-2")
    nodes.record_joined(loaded, "controller-2")
    assert nodes.joined(loaded) == {"controller-2"}
    nodes.joined_path(loaded).write_text("{not json")
    with pytest.raises(OperationError, match=r"etcd-joined\.json"):
        nodes.joined(loaded)


def test_a_joining_member_starts_with_state_existing(example_site: Site) -> None:
    from kubeprem.components import etcd
    from kubeprem.components.base import HostContext, RenderOptions

    m = example_site.machine("controller-2")
    assert "--initial-cluster-state=new" in etcd.argv(HostContext(example_site, m))
    joining = HostContext(example_site, m, RenderOptions(etcd_existing=True))
    assert "--initial-cluster-state=existing" in etcd.argv(joining)


def test_removing_the_last_members_is_refused(example_site: Site) -> None:
    from kubeprem.site import parse_site

    text = example_text()
    # a site with one etcd member: the other controllers keep control-plane and lb
    for n in (1, 2):
        text = text.replace(
            f"  - name: controller-{n}\n    address: 10.240.0.1{n}\n    roles: [etcd, control-plane, lb]",
            f"  - name: controller-{n}\n    address: 10.240.0.1{n}\n    roles: [control-plane, lb]",
        )
    site, _ = parse_site(text, "one.yaml")
    assert len(site.etcd_members) == 1
    bundle = issue_pki(site, NOW, SeededKeySource())
    with pytest.raises(InputError, match="at least two"):
        asyncio.run(nodes.remove_node(site, bundle, {}, "controller-0"))


def write_site(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(example_text())
    return path


def test_chaos_on_a_site_that_is_not_a_lab_needs_yes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty lab root: a lab of the example site left on this host (a demo) would make it
    # a lab, which needs no confirmation.
    monkeypatch.setenv("KUBEPREM_LAB_ROOT", str(tmp_path / "lab"))
    # stdin is not a terminal under pytest: no --yes means bad input, nothing done
    assert main(["verify", str(write_site(tmp_path)), "--chaos"]) == 2


def test_restore_needs_yes_without_a_terminal(tmp_path: Path) -> None:
    path = write_site(tmp_path)
    snap = tmp_path / "s.db"
    snap.write_bytes(b"x" * 5000)
    assert main(["restore", str(path), str(snap)]) == 2


def test_reset_of_one_member_points_to_node_remove(tmp_path: Path) -> None:
    assert main(["reset", str(write_site(tmp_path)), "controller-1", "--yes"]) == 2


def test_upgrade_plan_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        example_text().replace('kubernetes_version: "1.37.2"', 'kubernetes_version: "1.37.2"')
    )
    assert main(["upgrade", "plan", str(path), "--from", "1.36.3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["steps"][0]["kind"] == "backup" and doc["steps"][-1]["machine"] == "worker-2"
    assert main(["upgrade", "plan", str(path), "--from", "1.35.4"]) == 2


def test_join_etcd_adds_the_member_records_it_and_asks_for_a_new_plan(tmp_path: Path) -> None:
    from kubeprem.site import load_site
    from kubeprem.workflows import gates

    site = tmp_path / "site.yaml"
    site.write_text(example_text())
    loaded = load_site(site)
    loaded.state_dir.mkdir(parents=True)
    listing = {"members": [m for m in MEMBERS["members"] if m.get("name")]}
    fake = FakeTransport("controller-0")
    seen: list[tuple[str, ...]] = []

    def etcdctl(
        f: FakeTransport, argv: tuple[str, ...], stdin: bytes | None
    ) -> tuple[int, str, str]:
        seen.append(argv)
        if "list" in argv:
            return 0, json.dumps(listing), ""
        return 0, "", ""

    fake.handle((gates.ETCDCTL,), etcdctl)
    transports = {"controller-0": fake}
    assert asyncio.run(nodes.join_etcd(loaded, transports, "controller-2")) is True
    assert nodes.joined(loaded) == {"controller-2"}
    adds = [a for a in seen if "add" in a]
    assert len(adds) == 1 and "--peer-urls=https://10.240.0.12:2380" in adds[0]
    # a worker has no etcd member to join
    assert asyncio.run(nodes.join_etcd(loaded, transports, "worker-0")) is False

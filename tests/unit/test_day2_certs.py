"""Certificate renewal: which leaves are due, reissuing them in the state
folder, and the rolling order (one machine at a time, checked in between)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kubeprem.components.base import File, Rendered
from kubeprem.pki.check import check_pki
from kubeprem.pki.keys import SeededKeySource
from kubeprem.pki.store import ensure_pki, pki_dir, read_store
from kubeprem.plan.diff import diff, wanted
from kubeprem.plan.facts import gather_all
from kubeprem.site import LoadedSite, Site, example_text, load_site
from kubeprem.transport.base import Transport
from kubeprem.transport.fake import FakeTransport
from kubeprem.workflows import certs

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def loaded_site(tmp_path: Path) -> LoadedSite:
    path = tmp_path / "site.yaml"
    path.write_text(example_text())
    return load_site(path, check_files=False)


def test_due_picks_leaves_below_the_threshold_never_cas(tmp_path: Path) -> None:
    loaded = loaded_site(tmp_path)
    ensure_pki(loaded, NOW - timedelta(days=300), SeededKeySource("old"))
    statuses = check_pki(loaded, NOW)
    due = certs.due(statuses, days=90, everything=False)
    assert due and not set(due) & set(certs.CA_IDS)
    assert "apiserver" in due
    assert certs.due(statuses, days=30, everything=False) == []
    assert set(certs.due(statuses, days=0, everything=True)) == set(due)


def test_reissue_changes_only_the_due_leaves_and_their_kubeconfigs(tmp_path: Path) -> None:
    loaded = loaded_site(tmp_path)
    ensure_pki(loaded, NOW - timedelta(days=300), SeededKeySource("old"))
    before = read_store(pki_dir(loaded))
    certs.reissue(loaded, ["apiserver", "admin"], NOW, SeededKeySource("new"))
    after = read_store(pki_dir(loaded))
    changed = {p for p in after if after[p] != before.get(p)}
    assert changed == {
        "apiserver.crt",
        "apiserver.key",
        "admin.crt",
        "admin.key",
        "kubeconfig/admin.conf",
    }
    days = {s.id: s.days_left for s in check_pki(loaded, NOW)}
    assert days["apiserver"] > 300 and days["scheduler"] < 90
    assert oct((pki_dir(loaded) / "admin.key").stat().st_mode & 0o777) == "0o600"


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def wrap(self, fake: FakeTransport) -> FakeTransport:
        events = self.events
        original = fake.put

        async def put(file: File, *, step: str) -> None:
            events.append(f"write {fake.name}")
            await original(file, step=step)

        fake.put = put  # type: ignore[method-assign]
        return fake

    async def check(self, site: Site, name: str, transports: object) -> None:
        self.events.append(f"check {name}")


def test_roll_goes_one_machine_at_a_time_controllers_first(example_site: Site) -> None:
    async def go() -> list[str]:
        rec = Recorder()
        hosts: dict[str, Transport] = {
            m.name: rec.wrap(FakeTransport(m.name)) for m in example_site.machines
        }
        # the site order puts controllers first; shuffle the desired dict to show
        # the roll orders by role, not by dict order
        names = [m.name for m in reversed(example_site.machines)]
        desired = {n: [Rendered("pki", (File.text(f"/etc/kubernetes/{n}.crt", n),))] for n in names}
        facts = await gather_all(hosts, {n: wanted(r) for n, r in desired.items()})
        plan = diff(desired, facts)
        report = await certs.roll(example_site, plan, hosts, check=rec.check)
        assert report.order == [m.name for m in example_site.machines]
        return rec.events

    events = asyncio.run(go())
    expected = []
    for name in [
        "controller-0",
        "controller-1",
        "controller-2",
        "worker-0",
        "worker-1",
        "worker-2",
    ]:
        expected += [f"write {name}", f"check {name}"]
    assert events == expected


def test_roll_skips_machines_without_changes_and_honours_only(example_site: Site) -> None:
    async def go() -> list[str]:
        rec = Recorder()
        hosts: dict[str, Transport] = {
            m.name: rec.wrap(FakeTransport(m.name)) for m in example_site.machines
        }
        desired = {
            n: [Rendered("pki", (File.text("/etc/x", "x"),))]
            for n in ("controller-1", "worker-2", "controller-2")
        }
        facts = await gather_all(hosts, {n: wanted(r) for n, r in desired.items()})
        plan = diff(desired, facts)
        await certs.roll(
            example_site, plan, hosts, only=["controller-1", "controller-2"], check=rec.check
        )
        return rec.events

    assert asyncio.run(go()) == [
        "write controller-1",
        "check controller-1",
        "write controller-2",
        "check controller-2",
    ]


def test_roll_order_is_control_plane_then_workers(example_site: Site) -> None:
    assert certs.roll_order(example_site)[:3] == ["controller-0", "controller-1", "controller-2"]

"""Upgrades: the order (backup, etcd, control plane one by one, workers
drained one by one) and the version-skew rules as pure plan tests; then
`upgrade apply`'s parts on fake machines: the releases read from the
machines, the refusals, the plan cut into one step per machine, and apply
refusing a cluster on another release."""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import pytest

from kubeprem.artifacts.cache import Artifact, ArtifactSet
from kubeprem.errors import InputError, PreflightError
from kubeprem.pki.bundle import PkiBundle
from kubeprem.plan.facts import HostFacts, parse_versions
from kubeprem.plan.model import WriteFile
from kubeprem.site import LoadedSite
from kubeprem.site.model import Site
from kubeprem.transport.fake import FakeFile, FakeService, FakeTransport
from kubeprem.workflows import apply as wf
from kubeprem.workflows import upgrade as up
from kubeprem.workflows.desired import ARTIFACTS_BY_ROLE
from tests.conftest import site_with_version


def test_one_minor_up_orders_etcd_control_plane_then_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # every current row ships the same etcd: give 1.36 a newer one, so
    # that the plan has etcd to move first
    row = up.TABLE[(1, 36)]
    monkeypatch.setitem(up.TABLE, (1, 36), replace(row, etcd_version="3.6.99"))
    site = site_with_version("1.36.3")
    plan = up.upgrade_plan(site, "1.35.4")
    kinds = [(s.kind, s.machine) for s in plan.steps]
    assert kinds == [
        ("backup", None),
        ("etcd", "controller-0"),
        ("etcd", "controller-1"),
        ("etcd", "controller-2"),
        ("control-plane", "controller-0"),
        ("control-plane", "controller-1"),
        ("control-plane", "controller-2"),
        ("worker", "worker-0"),
        ("worker", "worker-1"),
        ("worker", "worker-2"),
    ]
    worker = plan.steps[-1].actions
    assert (
        worker[0].startswith("kubectl drain worker-2") and worker[2] == "kubectl uncordon worker-2"
    )
    assert f"{up.TABLE[(1, 35)].etcd_version} -> 3.6.99" in plan.steps[1].actions[0]


def test_one_minor_up_with_the_same_etcd_leaves_etcd_alone() -> None:
    plan = up.upgrade_plan(site_with_version("1.36.3"), "1.35.4")
    assert up.TABLE[(1, 35)].etcd_version == up.TABLE[(1, 36)].etcd_version
    assert [s.kind for s in plan.steps] == [
        "backup",
        *["control-plane"] * 3,
        *["worker"] * 3,
    ]


def test_patch_upgrade_within_a_minor_keeps_etcd() -> None:
    plan = up.upgrade_plan(site_with_version("1.36.4"), "1.36.3")
    assert [s.kind for s in plan.steps].count("etcd") == 0
    assert plan.steps[0].kind == "backup"


def test_same_version_has_nothing_to_do() -> None:
    assert up.upgrade_plan(site_with_version("1.36.3"), "1.36.3").steps == ()


@pytest.mark.parametrize(
    ("current", "target", "why"),
    [
        ("1.35.1", "1.37.0", "skips minor versions"),
        ("1.37.0", "1.36.2", "downgrade"),
        ("1.36.3", "1.36.1", "downgrade"),
        ("1.20.2", "1.35.0", "skips minor versions"),
        ("1.34.0", "1.35.0", "not a version kubeprem supports"),
        ("1.33.1", "1.35.0", "not a version kubeprem supports"),  # past end of life
    ],
)
def test_skew_policy_refusals(current: str, target: str, why: str) -> None:
    problems = up.skew_problems(current, target)
    assert any(why in p for p in problems), problems


def test_refused_plan_raises_input_error_naming_the_path() -> None:
    with pytest.raises(InputError, match=r"1\.35 -> 1\.36 -> 1\.37"):
        up.upgrade_plan(site_with_version("1.37.1"), "1.35.4")


def test_kubelet_skew() -> None:
    assert up.kubelet_skew_ok("1.37.0", "1.35.2")
    assert up.kubelet_skew_ok("1.37.0", "1.34.3")  # three behind from 1.28 on
    assert not up.kubelet_skew_ok("1.37.0", "1.33.0")
    assert not up.kubelet_skew_ok("1.36.0", "1.37.0")  # never newer
    # two behind before 1.28: only the legacy 1.20 row reaches this rule now
    assert up.kubelet_skew_ok("1.22.0", "1.20.0") and not up.kubelet_skew_ok("1.23.0", "1.20.0")
    assert up.kubelet_max_lag(27) == 2 and up.kubelet_max_lag(28) == 3


def test_version_parsing() -> None:
    assert up.parse_version("v1.20.5+really1.20.2") == (1, 20, 5)
    with pytest.raises(InputError):
        up.parse_version("latest")


# -- upgrade apply: the running releases, the refusals, the steps ------------------


def _facts(site: Site, versions: Mapping[str, Mapping[str, str]]) -> dict[str, HostFacts]:
    return {m.name: HostFacts(m.name, versions=versions.get(m.name, {})) for m in site.machines}


def _running(site: Site, control: str, kubelet: str) -> dict[str, HostFacts]:
    out: dict[str, dict[str, str]] = {}
    for m in site.machines:
        v: dict[str, str] = {}
        if m.has("control-plane"):
            v["kube-apiserver"] = control
        if m.has("worker"):
            v["kubelet"] = kubelet
        out[m.name] = v
    return _facts(site, out)


def test_versions_are_read_from_each_binary_first_line() -> None:
    lines = [
        "kube-apiserver Kubernetes v1.36.3",
        "kubelet Kubernetes v1.37.2",
        "etcd etcd Version: 3.6.17",
        "kubelet-broken something without a version",
    ]
    assert parse_versions(lines) == {
        "kube-apiserver": "1.36.3",
        "kubelet": "1.37.2",
        "etcd": "3.6.17",
    }


def test_a_machine_runs_the_lowest_release_of_its_binaries() -> None:
    f = HostFacts("m", versions={"kube-apiserver": "1.37.2", "kubelet": "1.36.3"})
    assert wf.installed_release(f) == "1.36.3"
    assert wf.installed_release(HostFacts("new")) is None


def test_version_changes_names_machines_on_another_release_only() -> None:
    site = site_with_version("1.37.2")
    facts = _running(site, "1.37.2", "1.36.3")
    changes = wf.version_changes(site, facts)
    assert changes == {m.name: "1.36.3" for m in site.workers}
    assert wf.version_changes(site, _facts(site, {})) == {}  # bare machines


def test_check_upgrade_returns_the_lowest_api_server() -> None:
    site = site_with_version("1.37.2")
    facts = _running(site, "1.36.3", "1.36.3")
    facts[site.controllers[0].name] = HostFacts(
        site.controllers[0].name, versions={"kube-apiserver": "1.37.2"}
    )  # an interrupted upgrade: one controller done
    assert up.check_upgrade(site, facts) == "1.36.3"


@pytest.mark.parametrize(
    ("control", "kubelet", "why"),
    [
        ("1.35.4", "1.35.4", "skips minor versions"),
        ("1.38.0", "1.37.2", "downgrade"),
        ("1.36.3", "1.20.2", "outside the skew"),
    ],
)
def test_check_upgrade_refuses_with_the_rule(control: str, kubelet: str, why: str) -> None:
    site = site_with_version("1.37.2")
    with pytest.raises(InputError, match=why) as err:
        up.check_upgrade(site, _running(site, control, kubelet))
    assert err.value.exit_status == 2
    assert "nothing changed" in str(err.value)


def test_check_upgrade_of_a_cluster_never_applied_points_to_apply() -> None:
    site = site_with_version("1.37.2")
    with pytest.raises(InputError, match="kubeprem apply"):
        up.check_upgrade(site, _facts(site, {}))


def _artifacts(root: Path, version: str, tag: bytes) -> ArtifactSet:
    files = {}
    for name in sorted({n for names in ARTIFACTS_BY_ROLE.values() for n in names}):
        path = root / name
        content = name.encode() + b" " + tag
        path.write_bytes(content)
        dest = (
            PurePosixPath(
                "/opt/cni/bin"
                if name in ("bridge", "host-local", "loopback", "portmap")
                else "/usr/local/bin"
            )
            / name
        )
        files[name] = Artifact(
            name, version, path, hashlib.sha256(content).hexdigest(), len(content), "test", dest
        )
    return ArtifactSet(version, "test", root, files)


@dataclass
class Converged:
    loaded: LoadedSite
    bundle: PkiBundle
    fakes: dict[str, FakeTransport]
    old: ArtifactSet
    root: Path

    def plan(self, artifacts: ArtifactSet) -> wf.ClusterPlan:
        return asyncio.run(wf.make_plan(self.loaded, self.bundle, artifacts, self.fakes))

    def written(self, step: up.UpgradeStep) -> set[str]:
        return {
            c.path
            for _, part in step.parts
            for hp in part.hosts.values()
            for c in hp.changes
            if isinstance(c, WriteFile)
        }


def _bare(name: str) -> FakeTransport:
    units = (
        "haproxy.service",
        "keepalived.service",
        "systemd-modules-load.service",
        "systemd-sysctl.service",
    )
    fake = FakeTransport(
        name,
        services={u: FakeService(installed=True) for u in units},
        clock=lambda: datetime.now(UTC).timestamp(),
    )
    return fake


@pytest.fixture(scope="module")
def converged(
    cluster: tuple[LoadedSite, PkiBundle], tmp_path_factory: pytest.TempPathFactory
) -> Converged:
    """Fake machines holding every file an apply with the "old" binaries wrote."""
    loaded, bundle = cluster
    fakes = {m.name: _bare(m.name) for m in loaded.site.machines}
    old = _artifacts(tmp_path_factory.mktemp("old"), "old", b"old")
    c = Converged(loaded, bundle, fakes, old, tmp_path_factory.mktemp("new"))
    cplan = c.plan(old)
    for name, hp in cplan.hosts.hosts.items():
        for change in hp.changes:
            if isinstance(change, WriteFile):
                fakes[name].files[change.path] = FakeFile(change.file.content, change.file.mode)
        for rendered in cplan.desired[name]:
            for service in rendered.services:
                unit = service if service.endswith(".service") else f"{service}.service"
                fakes[name].services[unit] = FakeService("enabled", "active", installed=True)
    return c


def _kinds(steps: list[up.UpgradeStep]) -> list[tuple[str, str]]:
    return [(s.kind, s.host) for s in steps]


def test_steps_go_controller_by_controller_then_worker_by_worker(converged: Converged) -> None:
    site = converged.loaded.site
    new = _artifacts(converged.root, "new", b"new")
    # only the Kubernetes binaries change: etcd's are the old ones
    new = replace(
        new,
        files={
            **new.files,
            **{
                n: converged.old.files[n]
                for n in ARTIFACTS_BY_ROLE["etcd"]
                if n in converged.old.files
            },
        },
    )
    steps = up.upgrade_steps(site, converged.plan(new))
    assert _kinds(steps) == [("control-plane", m.name) for m in site.controllers] + [
        ("worker", m.name) for m in site.workers
    ]
    for step in steps:
        assert all(set(part.hosts) == {step.host} for _, part in step.parts)
        written = converged.written(step)
        binaries = {str(a.destination) for a in new.files.values()}
        assert written and written <= binaries, written - binaries  # nothing else changed
    assert "kube-apiserver" in steps[0].restarts and "etcd" not in steps[0].restarts
    assert {"kubelet", "kube-proxy", "containerd"} <= set(steps[-1].restarts)
    assert steps[-1].describe().startswith(f"worker {site.workers[-1].name}: drain, ")


def test_new_etcd_binaries_come_first_member_by_member_and_only_them(
    converged: Converged,
) -> None:
    site = converged.loaded.site
    steps = up.upgrade_steps(site, converged.plan(_artifacts(converged.root, "new", b"newer")))
    members = [m.name for m in site.etcd_members]
    etcd_names = set(ARTIFACTS_BY_ROLE["etcd"])
    assert _kinds(steps)[: len(members)] == [("etcd", n) for n in members]
    for step in steps[: len(members)]:
        assert {posixpath.basename(p) for p in converged.written(step)} <= etcd_names
        assert step.restarts == ("etcd",)
    controller = steps[len(members)]
    assert controller.kind == "control-plane" and "etcd" not in controller.restarts
    names = {posixpath.basename(p) for p in converged.written(controller)}
    assert "kube-apiserver" in names and not names & etcd_names


def test_a_converged_cluster_has_no_steps(converged: Converged) -> None:
    assert up.upgrade_steps(converged.loaded.site, converged.plan(converged.old)) == []


def test_apply_refuses_machines_on_another_release_and_upgrade_does_not(
    converged: Converged,
) -> None:
    site = converged.loaded.site
    worker = converged.fakes[site.workers[0].name]
    worker.versions = {"kubelet": "Kubernetes v1.36.3"}
    try:
        cplan = converged.plan(converged.old)
    finally:
        worker.versions = {}
    assert cplan.releases == {site.workers[0].name: "1.36.3"}
    with pytest.raises(PreflightError, match="kubeprem upgrade apply") as err:
        wf.check_preflight(cplan)
    assert err.value.exit_status == 2 and f"{site.workers[0].name} runs 1.36.3" in str(err.value)
    wf.check_preflight(cplan, upgrading=True)
    assert cplan.to_dict()["running_releases"] == {site.workers[0].name: "1.36.3"}


def test_nodes_left_cordoned_by_an_upgrade_are_found_by_their_mark() -> None:
    nodes = {
        "items": [
            {"metadata": {"name": "worker-0", "annotations": {up.CORDONED: "true"}}},
            {"metadata": {"name": "worker-1", "annotations": {"other": "x"}}},
            {"metadata": {"name": "worker-2"}},
        ]
    }
    assert up.cordoned_by_upgrade(nodes) == ["worker-0"]

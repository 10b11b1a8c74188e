"""Apply under failure, against FakeTransport: hosts that cannot be reached
stop the plan before anything is changed, and every one of them is named; a
host failing in the middle of a phase stops apply with host, step, command,
status and stderr, leaves later phases untouched, and once fixed the rerun's
plan converges; temporaries of an interrupted write are removed, nothing
else is."""

from __future__ import annotations

import asyncio
import fnmatch
import posixpath
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from kubeprem.components.base import File
from kubeprem.errors import OperationError, PreflightError, RemoteError
from kubeprem.pki.bundle import PkiBundle
from kubeprem.site import LoadedSite
from kubeprem.transport.base import Result, Transport
from kubeprem.transport.fake import FakeFile, FakeService, FakeTransport
from kubeprem.transport.ssh import TEMP_GLOB, temp_name
from kubeprem.workflows import apply as wf
from kubeprem.workflows.execute import ApplyError, execute

ETCD_UNIT = "/etc/systemd/system/etcd.service"
APISERVER_UNIT = "/etc/systemd/system/kube-apiserver.service"
OS_UNITS = (
    "haproxy.service",
    "keepalived.service",
    "systemd-modules-load.service",
    "systemd-sysctl.service",
)


def prepare(
    fake: FakeTransport, argv: tuple[str, ...], stdin: bytes | None
) -> tuple[int, str, str]:
    """The preparation script, as the real one behaves on the fake's files."""
    glob, rest = argv[4], list(argv[5:])
    managed = rest[rest.index("--") + 1 :]
    removed = [
        p
        for p in fake.files
        if posixpath.dirname(p) in managed and fnmatch.fnmatch(posixpath.basename(p), glob)
    ]
    for p in removed:
        del fake.files[p]
    return 0, "".join(f"{p}\n" for p in removed), ""


def bare(name: str) -> FakeTransport:
    # units of the OS and of Debian's haproxy and keepalived exist already
    fake = FakeTransport(
        name,
        services={unit: FakeService(installed=True) for unit in OS_UNITS},
        clock=lambda: datetime.now(UTC).timestamp(),
    )
    fake.handle(("sh", "-c", wf.PREPARE_SCRIPT, "kubeprem-prepare"), prepare)
    return fake


def fakes_for(loaded: LoadedSite) -> dict[str, FakeTransport]:
    return {m.name: bare(m.name) for m in loaded.site.machines}


class Unreachable:
    """A host whose SSH connection cannot be made (the transport's error)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    @property
    def host(self) -> str:
        return self.name

    async def run(
        self,
        argv: Sequence[str],
        *,
        step: str,
        stdin: bytes | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> Result:
        raise OperationError(f"{self.name} (root@10.240.0.22:22): cannot connect: {self.reason}")

    async def put(self, file: File, *, step: str) -> None:
        raise OperationError(f"{self.name}: cannot connect: {self.reason}")

    async def close(self) -> None:
        pass


def plan(
    loaded: LoadedSite, bundle: PkiBundle, transports: Mapping[str, Transport]
) -> wf.ClusterPlan:
    return asyncio.run(wf.make_plan(loaded, bundle, None, transports))


def only_facts(fake: FakeTransport) -> bool:
    return all(c.kind == "run" and c.argv[3:4] == ("kubeprem-facts",) for c in fake.calls)


def assert_untouched(fakes: Mapping[str, FakeTransport]) -> None:
    """No host was asked anything but its facts, and no file was written."""
    for name, fake in fakes.items():
        assert only_facts(fake) and fake.files == {}, name


# -- unreachable hosts: the plan fails before acting -----------------------------


def test_unreachable_host_fails_the_plan_and_nothing_is_changed(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = fakes_for(loaded)
    transports: dict[str, Transport] = dict(fakes)
    transports["worker-2"] = Unreachable("worker-2", "No route to host")
    with pytest.raises(OperationError) as err:
        plan(loaded, bundle, transports)
    message = str(err.value)
    assert "\n" not in message
    assert "worker-2" in message and "No route to host" in message
    assert "nothing was changed" in message
    for name, fake in fakes.items():
        if name != "worker-2":
            assert only_facts(fake), f"{name} got more than the facts command"
            assert fake.files == {}


def test_every_unreachable_host_is_named(cluster: tuple[LoadedSite, PkiBundle]) -> None:
    loaded, bundle = cluster
    transports: dict[str, Transport] = dict(fakes_for(loaded))
    transports["worker-1"] = Unreachable("worker-1", "Connection refused")
    transports["controller-2"] = Unreachable("controller-2", "timed out")
    with pytest.raises(OperationError) as err:
        plan(loaded, bundle, transports)
    message = str(err.value)
    assert "2 hosts" in message
    assert "worker-1" in message and "Connection refused" in message
    assert "controller-2" in message and "timed out" in message


def test_a_bug_while_gathering_is_not_hidden_as_a_host_failure(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = fakes_for(loaded)

    def broken(
        fake: FakeTransport, argv: tuple[str, ...], stdin: bytes | None
    ) -> tuple[int, str, str]:
        raise KeyError("bug")

    fakes["worker-0"].handle(("sh", "-c"), broken)
    with pytest.raises(KeyError):
        plan(loaded, bundle, dict(fakes))


# -- preflight: refused before anything changes -------------------------------------


def test_preflight_problems_refuse_with_exit_status_2_and_nothing_changes(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = fakes_for(loaded)
    fakes["worker-1"].swaps.append(("/dev/sda2", 1024, 0))
    cplan = plan(loaded, bundle, dict(fakes))
    with pytest.raises(PreflightError) as err:
        wf.check_preflight(cplan)
    assert err.value.exit_status == 2
    assert "worker-1: swap is on" in str(err.value)
    with pytest.raises(PreflightError):
        asyncio.run(wf.apply(loaded, cplan, dict(fakes), [], say=print))
    assert_untouched(fakes)


# -- a host failing in the middle of a phase ---------------------------------------


def test_failure_in_the_middle_of_a_phase_then_rerun_converges(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = fakes_for(loaded)
    stderr = "Job for etcd.service failed because the control process exited with error code."
    fakes["controller-1"].fail_command(
        ("systemctl", "start", "etcd.service"), status=1, stderr=stderr, times=None
    )
    first = plan(loaded, bundle, dict(fakes))
    said: list[str] = []
    with pytest.raises(ApplyError) as err:
        asyncio.run(wf.apply(loaded, first, dict(fakes), [], say=said.append))

    message = str(err.value)
    for part in ("controller-1", "start etcd.service", "systemctl start etcd.service", stderr):
        assert part in message
    assert "exited with status 1" in message
    assert said == ["phase base", "phase etcd"], "later phases must not start"
    failed = err.value.summary.failed()
    assert list(failed) == ["controller-1"]
    assert isinstance(failed["controller-1"], RemoteError)
    # the other members went through their part of the phase
    for name in ("controller-0", "controller-2"):
        assert fakes[name].services["etcd.service"].active == "active"
    # nothing of a later phase was written anywhere
    for fake in fakes.values():
        assert APISERVER_UNIT not in fake.files
        assert not any(p.startswith("/etc/systemd/system/kubelet") for p in fake.files)
    # writes are atomic and complete: every file present is as desired
    for name, fake in fakes.items():
        desired = {f.path: f.content for r in first.desired[name] for f in r.files}
        for path, f in fake.files.items():
            assert f.content == desired[path], f"{name}:{path} differs from the desired content"

    # the cause is fixed: the rerun's plan holds exactly what is left, and executing
    # it converges (the gates and the cluster's API are the lab test's business)
    fakes["controller-1"]._failures.clear()
    second = plan(loaded, bundle, dict(fakes))
    remaining = {h: [c.describe() for c in hp.changes] for h, hp in second.hosts.hosts.items()}
    assert any("start etcd.service" in c for c in remaining["controller-1"])
    assert not any("etcd" in c for c in remaining["controller-0"])
    asyncio.run(execute(second.hosts, dict(fakes)))
    assert plan(loaded, bundle, dict(fakes)).hosts.empty


def test_a_write_refused_in_the_middle_of_a_phase_names_the_file(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = fakes_for(loaded)
    fakes["controller-2"].fail_put(ETCD_UNIT, stderr="SFTPFailure: Is a directory", times=None)
    with pytest.raises(ApplyError) as err:
        asyncio.run(wf.apply(loaded, plan(loaded, bundle, dict(fakes)), dict(fakes), [], say=print))
    message = str(err.value)
    assert "controller-2" in message and ETCD_UNIT in message and "Is a directory" in message
    assert ETCD_UNIT not in fakes["controller-2"].files
    assert "etcd.service" not in fakes["controller-2"].services or (
        fakes["controller-2"].services["etcd.service"].active != "active"
    )


# -- temporaries of an interrupted apply ------------------------------------------------


def test_prepare_removes_only_our_stale_temporaries_in_managed_directories(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = fakes_for(loaded)
    ours = "/etc/kubernetes/" + temp_name("kubelet.conf")
    image = "/var/lib/kubeprem/images/" + temp_name("pause.tar")
    kept = {
        "/etc/kubernetes/.kubelet.conf.kubeprem-old",  # not our pattern
        "/etc/kubernetes/.kubelet.conf.swp",
        "/home/user/" + temp_name("notes"),  # not a managed directory
    }
    for path in (ours, image, *kept):
        fakes["worker-0"].files[path] = FakeFile(b"partial")
    cplan = plan(loaded, bundle, dict(fakes))
    assert ours not in cplan.facts["worker-0"].files  # the facts never look at them
    removed = asyncio.run(wf.prepare_hosts(loaded.site, cplan.desired, dict(fakes)))
    assert sorted(removed["worker-0"]) == sorted([ours, image])
    assert all(not paths for host, paths in removed.items() if host != "worker-0")
    assert set(fakes["worker-0"].files) == kept


def test_prepare_command_is_one_round_trip_with_values_as_arguments() -> None:
    argv = wf.prepare_command(
        {"/var/lib/etcd": "0700", "/var/log/kubernetes": "0700"},
        ["/etc/kubernetes", "/usr/local/bin"],
    )
    assert argv[:2] == ["sh", "-c"] and argv[3:5] == ["kubeprem-prepare", TEMP_GLOB]
    assert argv[5:] == [
        "0700",
        "/var/lib/etcd",
        "0700",
        "/var/log/kubernetes",
        "--",
        "/etc/kubernetes",
        "/usr/local/bin",
    ]
    assert "/var/lib/etcd" not in argv[2]  # the script is a constant


def test_temp_names_match_the_glob_that_removes_them() -> None:
    for name in ("kubelet", "ca.crt", "10-bridge.conf"):
        assert fnmatch.fnmatch(temp_name(name), TEMP_GLOB)
    assert not fnmatch.fnmatch("kubelet", TEMP_GLOB)


def test_managed_directories_include_the_image_scratch_folder(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    cplan = plan(loaded, bundle, dict(fakes_for(loaded)))
    dirs = wf.managed_directories(cplan.desired["worker-0"])
    assert wf.IMAGES_DIR in dirs and "/etc/systemd/system" in dirs
    assert dirs == sorted(set(dirs))

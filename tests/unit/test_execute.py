"""Executor: idempotence, order within a host, failure in the middle,
drift refused, parallel hosts, progress - all against FakeTransport."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from kubeprem.components.base import File, Rendered
from kubeprem.errors import RemoteError
from kubeprem.plan.diff import diff, wanted
from kubeprem.plan.facts import gather_all
from kubeprem.plan.model import Plan, RunCommand
from kubeprem.transport.base import Result, Transport
from kubeprem.transport.fake import FakeFile, FakeService, FakeTransport
from kubeprem.workflows.execute import (
    ApplyError,
    ApplySummary,
    DriftError,
    RecordingProgress,
    execute,
)

ETCD_UNIT = "/etc/systemd/system/etcd.service"
ETCD_KEY = "/etc/kubernetes/pki/etcd/server.key"
ETCD_CA = "/etc/kubernetes/pki/etcd/ca.crt"
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"


def controller(version: str = "1", ca: str = "CA") -> list[Rendered]:
    return [
        Rendered(
            "etcd",
            (
                File.text(ETCD_CA, ca),
                File(ETCD_KEY, b"KEY" + version.encode(), 0o600, secret=True),
                File.text(ETCD_UNIT, f"[Service]\nExecStart=/usr/local/bin/etcd --v={version}\n"),
            ),
            ("etcd.service",),
        ),
        Rendered("haproxy", (File.text(HAPROXY_CFG, "global\n"),), ("haproxy.service",)),
        Rendered("node-os", (File.text("/etc/sysctl.d/99-kubernetes.conf", "x=1\n"),)),
    ]


def worker() -> list[Rendered]:
    return [
        Rendered(
            "kubelet",
            (
                File.text("/etc/systemd/system/kubelet.service", "[Service]\n"),
                File.text("/var/lib/kubelet/config.yaml", "kind: KubeletConfiguration\n"),
            ),
            ("kubelet.service",),
        )
    ]


def bare(name: str) -> FakeTransport:
    # haproxy comes from a Debian package: its unit exists before kubeprem runs
    return FakeTransport(name, services={"haproxy.service": FakeService(installed=True)})


async def make_plan(
    fakes: Mapping[str, FakeTransport], desired: Mapping[str, Sequence[Rendered]]
) -> Plan:
    transports: dict[str, Transport] = dict(fakes)
    facts = await gather_all(transports, {h: wanted(r) for h, r in desired.items()})
    return diff(desired, facts)


async def apply(
    fakes: Mapping[str, FakeTransport], plan: Plan, progress: RecordingProgress | None = None
) -> ApplySummary:
    transports: dict[str, Transport] = dict(fakes)
    return await execute(plan, transports, progress=progress)


def test_apply_then_the_next_plan_is_empty_on_every_host() -> None:
    async def go() -> None:
        fakes = {"c1": bare("c1"), "c2": bare("c2"), "w1": bare("w1")}
        desired = {"c1": controller(), "c2": controller(), "w1": worker()}
        plan = await make_plan(fakes, desired)
        assert len(plan.hosts["c1"].changes) == 10
        summary = await apply(fakes, plan)
        assert summary.ok
        c1 = summary.hosts["c1"]
        assert c1.files_written == (
            ETCD_CA,
            ETCD_KEY,
            ETCD_UNIT,
            HAPROXY_CFG,
            "/etc/sysctl.d/99-kubernetes.conf",
        )
        assert c1.services_enabled == ("etcd.service", "haproxy.service")
        assert c1.services_started == ("etcd.service", "haproxy.service")
        assert c1.daemon_reloaded and c1.services_restarted == ()
        assert fakes["c1"].files[ETCD_KEY] == FakeFile(b"KEY1", 0o600)
        assert fakes["w1"].services["kubelet.service"].active == "active"
        assert all(not f.warnings for f in fakes.values())

        again = await make_plan(fakes, desired)
        assert again.empty
        assert again.to_dict() == {"hosts": {"c1": [], "c2": [], "w1": []}}
        before = {h: len(f.calls) for h, f in fakes.items()}
        summary = await apply(fakes, again)
        assert all(len(f.calls) == before[h] for h, f in fakes.items())  # not even a drift check
        assert all(r.changes_planned == 0 for r in summary.hosts.values())

    asyncio.run(go())


def test_order_within_a_host_files_reload_enable_restart() -> None:
    async def go() -> None:
        fakes = {"c1": bare("c1")}
        await apply(fakes, await make_plan(fakes, {"c1": controller("1")}))
        fakes["c1"].calls.clear()
        plan = await make_plan(fakes, {"c1": controller("2")})
        fakes["c1"].calls.clear()
        summary = await apply(fakes, plan)
        assert fakes["c1"].commands() == [
            ("kubeprem-facts",),  # the drift check
            ("sftp-put", ETCD_KEY),
            ("sftp-put", ETCD_UNIT),
            ("systemctl", "daemon-reload"),
            ("systemctl", "restart", "etcd.service"),
        ]
        # only etcd's files changed: haproxy is not restarted
        assert summary.hosts["c1"].services_restarted == ("etcd.service",)
        assert fakes["c1"].services["haproxy.service"].restarts == 0
        assert fakes["c1"].services["etcd.service"].restarts == 1
        assert not fakes["c1"].warnings  # the restart saw the reloaded unit

    asyncio.run(go())


def test_a_reloadable_service_is_reloaded_not_restarted() -> None:
    def lb(config: str) -> list[Rendered]:
        return [
            Rendered(
                "haproxy",
                (File.text(HAPROXY_CFG, config),),
                ("haproxy.service",),
                reloads=("haproxy.service",),
            )
        ]

    async def go() -> None:
        fakes = {"c1": bare("c1")}
        await apply(fakes, await make_plan(fakes, {"c1": lb("global\n")}))
        summary = await apply(fakes, await make_plan(fakes, {"c1": lb("global\n# new\n")}))
        assert summary.hosts["c1"].services_reloaded == ("haproxy.service",)
        assert summary.hosts["c1"].services_restarted == ()
        svc = fakes["c1"].services["haproxy.service"]
        assert (svc.reloads, svc.restarts, svc.starts) == (1, 0, 1)

    asyncio.run(go())


def test_mode_only_change_is_a_chmod_and_restarts_nothing() -> None:
    async def go() -> None:
        fakes = {"c1": bare("c1")}
        desired = {"c1": controller()}
        await apply(fakes, await make_plan(fakes, desired))
        fakes["c1"].files[ETCD_KEY].mode = 0o644
        plan = await make_plan(fakes, desired)
        summary = await apply(fakes, plan)
        assert summary.hosts["c1"].files_chmodded == (ETCD_KEY,)
        assert ("chmod", "0600", ETCD_KEY) in [c.argv for c in fakes["c1"].calls]
        assert fakes["c1"].files[ETCD_KEY].mode == 0o600
        assert summary.hosts["c1"].services_restarted == ()
        assert (await make_plan(fakes, desired)).empty

    asyncio.run(go())


def test_failure_mid_host_leaves_later_files_untouched_and_rerun_converges() -> None:
    async def go() -> None:
        fakes = {"c1": bare("c1"), "c2": bare("c2")}
        old = {"c1": controller("1", ca="CA1"), "c2": controller("1", ca="CA1")}
        await apply(fakes, await make_plan(fakes, old))
        new = {"c1": controller("2", ca="CA2"), "c2": controller("2", ca="CA2")}
        fakes["c1"].fail_put(ETCD_KEY, stderr="No space left on device")
        plan = await make_plan(fakes, new)
        with pytest.raises(ApplyError) as info:
            await apply(fakes, plan)
        err = info.value
        assert "apply failed on 1 of 2 hosts" in str(err)
        assert f"c1: update {ETCD_KEY} (secret, mode 0600): `sftp-put {ETCD_KEY}`" in str(err)
        assert "No space left on device" in str(err)
        c1 = err.summary.hosts["c1"]
        assert c1.files_written == (ETCD_CA,) and c1.changes_done == 1
        assert isinstance(c1.error, RemoteError) and c1.error.host == "c1"
        # the failed file and those after it are as they were; nothing restarted
        assert fakes["c1"].files[ETCD_KEY].content == b"KEY1"
        assert "--v=1" in fakes["c1"].text(ETCD_UNIT)
        assert fakes["c1"].services["etcd.service"].restarts == 0
        # the other host went on and finished
        assert err.summary.hosts["c2"].ok and fakes["c2"].files[ETCD_KEY].content == b"KEY2"

        rerun = await make_plan(fakes, new)
        assert not rerun.hosts["c2"].changes
        await apply(fakes, rerun)
        assert (await make_plan(fakes, new)).empty
        assert fakes["c1"].services["etcd.service"].restarts == 1

    asyncio.run(go())


def test_failing_command_error_names_host_step_command_status_stderr() -> None:
    async def go() -> None:
        fakes = {"w1": bare("w1")}
        fakes["w1"].fail_command(
            ["systemctl", "start", "kubelet.service"],
            status=3,
            stderr="line 1\nJob for kubelet.service failed because the control process exited",
        )
        with pytest.raises(ApplyError) as info:
            await apply(fakes, await make_plan(fakes, {"w1": worker()}))
        msg = str(info.value)
        assert (
            "w1: start kubelet.service (is inactive): `systemctl start kubelet.service` "
            "exited with status 3: line 1 | Job for kubelet.service failed" in msg
        )

    asyncio.run(go())


def test_drift_between_plan_and_apply_is_refused_everywhere() -> None:
    async def go() -> None:
        fakes = {"c1": bare("c1"), "c2": bare("c2")}
        desired = {"c1": controller("1"), "c2": controller("1")}
        await apply(fakes, await make_plan(fakes, desired))
        new = {"c1": controller("2"), "c2": controller("2")}
        plan = await make_plan(fakes, new)
        fakes["c1"].files[ETCD_UNIT].content = b"edited by hand\n"  # after the plan was shown
        fakes["c2"].files.pop(ETCD_KEY)
        with pytest.raises(DriftError) as info:
            await apply(fakes, plan)
        msg = str(info.value)
        assert "nothing was changed" in msg and "Run the plan again" in msg
        assert f"c1: {ETCD_UNIT} content changed (sha256 " in msg
        assert f"c2: {ETCD_KEY} is gone (the plan would update it)" in msg
        for fake in fakes.values():
            assert [c.kind for c in fake.calls].count("put") == 5  # only the first apply's

    asyncio.run(go())


def test_a_file_created_since_the_plan_is_drift() -> None:
    async def go() -> None:
        fakes = {"w1": bare("w1")}
        plan = await make_plan(fakes, {"w1": worker()})
        fakes["w1"].files["/var/lib/kubelet/config.yaml"] = FakeFile(b"other\n")
        with pytest.raises(DriftError, match="now exists"):
            await apply(fakes, plan)

    asyncio.run(go())


class Gate:
    """Wraps a transport; its first put waits until every host has started one."""

    def __init__(self, inner: FakeTransport, barrier: asyncio.Barrier) -> None:
        self.inner = inner
        self.barrier = barrier
        self.waited = False

    @property
    def host(self) -> str:
        return self.inner.host

    async def run(self, argv: Sequence[str], **kw: object) -> Result:
        return await self.inner.run(argv, **kw)  # type: ignore[arg-type]

    async def put(self, file: File, *, step: str) -> None:
        if not self.waited:
            self.waited = True
            await asyncio.wait_for(self.barrier.wait(), timeout=5)
        await self.inner.put(file, step=step)

    async def close(self) -> None:
        await self.inner.close()


def test_hosts_run_in_parallel_and_report_progress() -> None:
    async def go() -> None:
        fakes = {h: bare(h) for h in ("c1", "c2", "c3")}
        desired = {h: controller() for h in fakes}
        plan = await make_plan(fakes, desired)
        barrier = asyncio.Barrier(3)  # deadlocks (and times out) if hosts ran one by one
        gated: dict[str, Transport] = {h: Gate(f, barrier) for h, f in fakes.items()}
        progress = RecordingProgress()
        ticks = iter(range(100))
        summary = await execute(plan, gated, progress=progress, clock=lambda: float(next(ticks)))
        assert summary.ok and all(r.duration > 0 for r in summary.hosts.values())
        c1 = [e for e in progress.events if e.host == "c1"]
        assert c1[0].kind == "host-start" and c1[0].total == 10
        assert c1[-1].kind == "host-done" and c1[-1].done == 10
        assert [e.message for e in c1 if e.kind == "change-done"][-3:] == [
            "enable etcd.service, haproxy.service",
            "start etcd.service (is inactive)",
            "start haproxy.service (is inactive)",
        ]

    asyncio.run(go())


def test_later_phase_commands_run_after_services() -> None:
    async def go() -> None:
        fakes = {"w1": bare("w1")}
        fakes["w1"].handle(["ip", "route"], lambda fake, argv, stdin: (0, "", ""))
        plan = (await make_plan(fakes, {"w1": worker()})).with_changes(
            "w1",
            [
                RunCommand(
                    ("ip", "route", "replace", "10.200.1.0/24", "via", "10.240.0.21"), "route"
                )
            ],
        )
        summary = await apply(fakes, plan)
        assert summary.hosts["w1"].commands_run == ("route",)
        assert fakes["w1"].calls[-1].argv[:2] == ("ip", "route")

    asyncio.run(go())


def test_a_host_with_changes_needs_a_transport() -> None:
    async def go() -> None:
        fakes = {"w1": bare("w1")}
        plan = await make_plan(fakes, {"w1": worker()})
        with pytest.raises(ValueError, match="no transport for hosts with changes: w1"):
            await execute(plan, {})

    asyncio.run(go())

"""Apply: which machines of a phase change together and which roll one at a time."""

from __future__ import annotations

from kubeprem.components.base import File
from kubeprem.plan.model import (
    Change,
    HostPlan,
    Plan,
    ReloadService,
    RestartService,
    StartService,
    WriteFile,
)
from kubeprem.workflows.apply import batches

CFG = "/etc/kubernetes/x.conf"


def write(host: str) -> WriteFile:
    return WriteFile(File.text(CFG, host), "content", "kube-apiserver")


def plan(**hosts: list[Change]) -> Plan:
    return Plan({h: HostPlan(h, tuple(cs)) for h, cs in hosts.items()})


def shape(steps: list[tuple[Plan, str | None]]) -> list[tuple[list[str], str | None]]:
    return [(sorted(h for h, hp in p.hosts.items() if hp.changes), r) for p, r in steps]


def test_restarts_on_several_machines_roll_one_at_a_time_after_the_others() -> None:
    restart = RestartService("kube-apiserver.service", (CFG,))
    part = plan(
        c0=[write("c0"), restart],
        c1=[write("c1"), restart],
        c2=[StartService("kube-apiserver.service", "inactive")],
        c3=[],
    )
    assert shape(batches(part, rolled=True)) == [
        (["c2"], None),
        (["c0"], "c0"),
        (["c1"], "c1"),
    ]


def test_one_restart_or_an_unrolled_phase_runs_everything_at_once() -> None:
    restart = RestartService("kubelet.service", (CFG,))
    one = plan(c0=[write("c0"), restart], c1=[write("c1")])
    assert shape(batches(one, rolled=True)) == [(["c0", "c1"], None)]
    many = plan(w0=[restart], w1=[restart], w2=[restart])
    assert shape(batches(many, rolled=False)) == [(["w0", "w1", "w2"], None)]


def test_reloads_are_not_restarts() -> None:
    reload = ReloadService("haproxy.service", ("/etc/haproxy/haproxy.cfg",))
    part = plan(c0=[reload], c1=[reload], c2=[reload])
    assert shape(batches(part, rolled=True)) == [(["c0", "c1", "c2"], None)]

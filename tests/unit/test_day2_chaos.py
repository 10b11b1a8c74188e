"""The pure parts of chaos verification: outage spans from probe samples,
pass/fail against goals, parsers of `ip -o addr` and `etcdctl endpoint status`."""

from __future__ import annotations

import json

from kubeprem.workflows import chaos
from kubeprem.workflows.chaos import Sample, ScenarioResult


def samples(pattern: str, step: float = 0.1) -> list[Sample]:
    return [Sample(i * step, c == ".", 0.01) for i, c in enumerate(pattern)]


def test_outages_run_from_first_failure_to_next_success() -> None:
    spans = chaos.outages(samples("...xxx....x.."))
    assert [(round(a, 2), round(b, 2)) for a, b in spans] == [(0.3, 0.6), (1.0, 1.1)]
    assert round(chaos.longest(spans), 2) == 0.3
    assert round(chaos.total(spans), 2) == 0.4


def test_a_failure_at_the_end_lasts_until_the_last_attempt_ends() -> None:
    spans = chaos.outages(samples("..xx"))
    assert [(round(a, 2), round(b, 2)) for a, b in spans] == [(0.2, 0.31)]
    assert chaos.outages([]) == []


def test_summarise_fails_a_scenario_over_its_goal() -> None:
    r = ScenarioResult("vip-failover", True, 0.0, 3.0)
    chaos.summarise(r, samples("." * 10 + "x" * 35 + "." * 10))
    assert not r.passed and round(r.outage_seconds, 1) == 3.5 and r.failures == 35
    ok = ScenarioResult("vip-failover", True, 0.0, 3.0)
    chaos.summarise(ok, samples("." * 10 + "x" * 20 + "." * 10))
    assert ok.passed and ok.to_dict()["outage_seconds"] == 2.0


def test_summarise_total_measure_adds_spans() -> None:
    r = ScenarioResult("etcd-member-stop", True, 0.0, 2.0)
    chaos.summarise(r, samples(".xxxxxxxxxxxx.xxxxxxxxxx."), measure="total")
    assert not r.passed and round(r.failed_seconds, 1) == 2.2


def test_vip_holder_from_ip_addr() -> None:
    out = (
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
        "2: eth0    inet 10.242.0.10/24 scope global eth0\\       valid_lft forever\n"
        "2: eth0    inet 10.242.0.100/24 scope global secondary eth0\\       valid_lft forever\n"
    )
    assert chaos.parse_vip_holder(out, "10.242.0.100")
    assert not chaos.parse_vip_holder(out, "10.242.0.101")
    assert not chaos.parse_vip_holder(out, "10.242.0.1")


def test_leader_and_revisions_from_endpoint_status() -> None:
    doc = [
        {
            "Endpoint": "https://10.242.0.10:2379",
            "Status": {"header": {"member_id": 1, "revision": 9}, "leader": 2},
        },
        {
            "Endpoint": "https://10.242.0.11:2379",
            "Status": {"header": {"member_id": 2, "revision": 9}, "leader": 2},
        },
    ]
    assert chaos.parse_leader(json.dumps(doc)) == "https://10.242.0.11:2379"
    assert chaos.revisions(json.dumps(doc)) == {
        "https://10.242.0.10:2379": 9,
        "https://10.242.0.11:2379": 9,
    }


def test_summary_table_has_a_row_per_scenario() -> None:
    from kubeprem.workflows.verify import summary_table

    r = ScenarioResult("restore", True, 27.0, 180.0, failed_seconds=27.0, probes=204, failures=137)
    table = summary_table([r])
    assert table.splitlines()[2] == "| restore | yes | 27.00 | 180 | 27.00 | 204 | 137 |"


def _app_run(lost: tuple[int, ...] = (), after: str | None = "redis-1") -> object:
    from kubeprem.workflows import failover as fo

    writes = tuple(
        fo.Write(i, 1000 + 100 * i, ok=not 30 <= i < 60, detail="" if i < 30 else "timeout")
        for i in range(100)
    )
    run = fo.Run("redis", "poweroff", fo.Primary("redis-0", "worker-0"))
    run.start_ms, run.fault_ms = 1000, 1000 + 100 * 29
    run.log = fo.ClientLog(writes, 11_000, 70, lost, 11_500)
    run.result = fo.measure(writes, run.fault_ms)
    run.primary_after = fo.Primary(after, "worker-1") if after else None
    return run


def test_an_app_failover_passes_within_its_goal_with_nothing_lost() -> None:
    passed, outage, details = chaos.app_verdict(_app_run(), 10.0)
    assert passed and round(outage, 1) == 3.1  # fault at write 29, first ok at 60
    assert details["acknowledged"] == 70 and details["lost"] == []
    assert not chaos.app_verdict(_app_run(), 3.0)[0]  # slower than the goal
    assert not chaos.app_verdict(_app_run(lost=(12,)), 10.0)[0]  # a write lost
    assert not chaos.app_verdict(_app_run(after="redis-0"), 10.0)[0]  # no new primary
    assert not chaos.app_verdict(_app_run(after=None), 10.0)[0]


def test_an_app_failover_becomes_a_timeline_of_its_writes() -> None:
    samples, marks = chaos.app_samples(_app_run())
    assert len(samples) == 100 and marks == [2.9]
    spans = chaos.outages(samples)
    assert [(round(a, 1), round(b, 1)) for a, b in spans] == [(3.0, 6.0)]


def test_pods_on_a_machine_are_listed_by_name() -> None:
    pods = [
        {"metadata": {"name": "redis-proxy-b"}, "spec": {"nodeName": "worker-1"}},
        {"metadata": {"name": "redis-0"}, "spec": {"nodeName": "worker-1"}},
        {"metadata": {"name": "redis-1"}, "spec": {"nodeName": "worker-2"}},
        {"metadata": {"name": "pending"}, "spec": {}},
    ]
    assert chaos.pods_on(pods, "worker-1") == ["redis-0", "redis-proxy-b"]
    assert chaos.pods_on(pods, "worker-9") == []

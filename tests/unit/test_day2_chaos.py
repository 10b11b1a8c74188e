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

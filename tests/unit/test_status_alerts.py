"""`kubeprem status`'s firing alerts: parsed from Prometheus's /api/v1/alerts."""

from __future__ import annotations

import json

import pytest

from kubeprem.workflows.status import FiringAlert, parse_alerts


def _alert(state: str, **labels: str) -> dict[str, object]:
    return {
        "labels": labels,
        "annotations": {"summary": f"{labels.get('alertname')} summary"},
        "state": state,
        "activeAt": "2026-11-26T15:00:00Z",
        "value": "0e+00",
    }


def _answer(*alerts: dict[str, object]) -> str:
    return json.dumps({"status": "success", "data": {"alerts": list(alerts)}})


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        ((), []),
        ((_alert("pending", alertname="KubeAPIServerDown", node="controller-1"),), []),
        (
            (
                _alert("firing", alertname="KubePodCrashLooping", severity="warning",
                       namespace="db", pod="pg-0"),
                _alert("firing", alertname="KubeAPIServerDown", severity="critical",
                       node="controller-1", instance="10.240.0.11:6443"),
                _alert("firing", alertname="Watchdog", instance="localhost:9090"),
            ),
            [
                FiringAlert("KubeAPIServerDown", "critical", "controller-1",
                            "KubeAPIServerDown summary"),
                FiringAlert("KubePodCrashLooping", "warning", "db/pg-0",
                            "KubePodCrashLooping summary"),
                FiringAlert("Watchdog", "-", "localhost:9090", "Watchdog summary"),
            ],
        ),
    ],
)  # fmt: skip
def test_parse_alerts_keeps_firing_ones_critical_first(
    alerts: tuple[dict[str, object], ...], expected: list[FiringAlert]
) -> None:
    assert parse_alerts(_answer(*alerts)) == expected


@pytest.mark.parametrize(
    ("version", "cgroupfs", "warned"),
    [
        ("1.37.2", "tmpfs", True),  # v1 under a kubelet that refuses it by default
        ("1.37.2", "cgroup2fs", False),
        ("1.37.2", None, False),  # not known: no claim
        ("1.20.2", "tmpfs", False),  # 1.20's kubelet knows nothing else
    ],
)
def test_status_warns_of_cgroup_v1_where_the_kubelet_deprecates_it(
    version: str, cgroupfs: str | None, warned: bool
) -> None:
    from kubeprem.workflows.status import cgroup_warning
    from tests.conftest import site_with_version

    w = cgroup_warning(site_with_version(version), "worker-0", cgroupfs)
    assert (w is not None) is warned
    if w:
        assert w.startswith("worker-0: cgroup v1") and "failCgroupV1: false" in w

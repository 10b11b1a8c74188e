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

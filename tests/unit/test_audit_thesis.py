"""The thesis's own manifests (chapter 4) give the findings one expects from reading them."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from kubeprem.apps.audit import Finding, Severity, audit_objects, load_paths

THESIS = Path(__file__).parents[1] / "fixtures" / "thesis"


@pytest.fixture(scope="module")
def by_object() -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for f in _findings():
        out[f"{f.kind}/{f.name}"].add(f.rule)
    return out


def _findings() -> list[Finding]:
    return audit_objects(load_paths([str(THESIS)]))


def test_all_thesis_manifests_load() -> None:
    kinds = sorted(f"{m.kind}/{m.name}" for m in load_paths([str(THESIS)]))
    assert kinds == [
        "Deployment/bbb-webrtc-sfu-app",
        "Deployment/freeswitch-app",
        "Deployment/fsesl-akka-app",
        "Deployment/kurento-app",
        "Service/freeswitch-service",
        "Service/kurento-service",
        "Service/mongo",
        "StatefulSet/db",
    ]


def test_passwords_come_from_a_configmap(by_object: dict[str, set[str]]) -> None:
    for name in ("freeswitch-app", "fsesl-akka-app", "bbb-webrtc-sfu-app"):
        assert "KP004" in by_object[f"Deployment/{name}"]


def test_hostpath_under_a_personal_home_directory(by_object: dict[str, set[str]]) -> None:
    for name in ("freeswitch-app", "kurento-app"):
        assert {"KP010", "KP015"} <= by_object[f"Deployment/{name}"]
    home = [f for f in _findings() if f.rule == "KP010"]
    assert all("/Users/student/var/bbb-volume" in f.message for f in home)
    assert all(f.severity is Severity.ERROR for f in home)


def test_one_volume_mounted_at_three_freeswitch_paths(by_object: dict[str, set[str]]) -> None:
    assert "KP016" in by_object["Deployment/freeswitch-app"]


def test_no_resources_and_no_probes_anywhere(by_object: dict[str, set[str]]) -> None:
    workloads = [k for k in by_object if not k.startswith("Service/")]
    assert len(workloads) == 5
    for name in workloads:
        assert {"KP020", "KP021", "KP022", "KP023"} <= by_object[name], name


def test_freeswitch_capabilities_and_nodeports(by_object: dict[str, set[str]]) -> None:
    assert "KP081" in by_object["Deployment/freeswitch-app"]
    assert "KP070" in by_object["Service/freeswitch-service"]
    assert "KP070" in by_object["Service/kurento-service"]


def test_mongo_statefulset(by_object: dict[str, set[str]]) -> None:
    # Untagged image, two replicas without a budget or spreading; its headless
    # Service and its storage class are right.
    assert by_object["StatefulSet/db"] == {
        "KP020",
        "KP021",
        "KP022",
        "KP023",
        "KP030",
        "KP050",
        "KP051",
    }
    assert "Service/mongo" not in by_object


def test_thesis_totals() -> None:
    found = _findings()
    assert sum(f.severity is Severity.ERROR for f in found) == 5
    assert sum(f.severity is Severity.WARNING for f in found) == 29

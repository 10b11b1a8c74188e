"""Upgrade plans: the order (backup, etcd, control plane one by one, workers
drained one by one) and the version-skew rules, as pure plan tests."""

from __future__ import annotations

import pytest

from kubeprem.errors import InputError
from kubeprem.workflows import upgrade as up
from tests.conftest import site_with_version


def test_one_minor_up_orders_etcd_control_plane_then_workers() -> None:
    site = site_with_version("1.30.4")
    plan = up.upgrade_plan(site, "1.29.9")
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
    assert "3.5.10 -> 3.5.12" in plan.steps[1].actions[0]


def test_patch_upgrade_within_a_minor_keeps_etcd() -> None:
    plan = up.upgrade_plan(site_with_version("1.30.5"), "1.30.4")
    assert [s.kind for s in plan.steps].count("etcd") == 0
    assert plan.steps[0].kind == "backup"


def test_same_version_has_nothing_to_do() -> None:
    assert up.upgrade_plan(site_with_version("1.30.4"), "1.30.4").steps == ()


@pytest.mark.parametrize(
    ("current", "target", "why"),
    [
        ("1.29.1", "1.31.0", "skips minor versions"),
        ("1.31.0", "1.30.2", "downgrade"),
        ("1.30.3", "1.30.1", "downgrade"),
        ("1.20.2", "1.29.0", "skips minor versions"),
        ("1.28.0", "1.29.0", "not a version kubeprem supports"),
    ],
)
def test_skew_policy_refusals(current: str, target: str, why: str) -> None:
    problems = up.skew_problems(current, target)
    assert any(why in p for p in problems), problems


def test_refused_plan_raises_input_error_naming_the_path() -> None:
    with pytest.raises(InputError, match=r"1\.29 -> 1\.30 -> 1\.31"):
        up.upgrade_plan(site_with_version("1.31.1"), "1.29.4")


def test_kubelet_skew() -> None:
    assert up.kubelet_skew_ok("1.31.0", "1.28.3")  # three behind from 1.28 on
    assert not up.kubelet_skew_ok("1.31.0", "1.27.0")
    assert not up.kubelet_skew_ok("1.30.0", "1.31.0")  # never newer
    assert up.kubelet_skew_ok("1.22.0", "1.20.0") and not up.kubelet_skew_ok("1.23.0", "1.20.0")


def test_version_parsing() -> None:
    assert up.parse_version("v1.20.5+really1.20.2") == (1, 20, 5)
    with pytest.raises(InputError):
        up.parse_version("latest")

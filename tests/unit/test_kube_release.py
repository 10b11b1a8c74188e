"""Kinds whose API moved between releases: PodDisruptionBudget."""

from __future__ import annotations

from typing import Any

import pytest

from kubeprem.cli.main import main
from kubeprem.kube.http import HttpKubeAPI, Request, build_request
from kubeprem.kube.resources import for_release, kind_of, path

PDB = {
    "apiVersion": "policy/v1beta1",
    "kind": "PodDisruptionBudget",
    "metadata": {"name": "redis", "namespace": "redis"},
    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"a": "b"}}},
}
SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "redis"}}


@pytest.mark.parametrize(
    ("minor", "version"),
    [
        (None, "policy/v1beta1"),
        ((1, 20), "policy/v1beta1"),
        ((1, 21), "policy/v1"),
        ((1, 37), "policy/v1"),
    ],
)
def test_a_pdb_lives_where_the_release_serves_it(
    minor: tuple[int, int] | None, version: str
) -> None:
    assert kind_of("PodDisruptionBudget", minor).api_version == version
    assert path("PodDisruptionBudget", "redis", "redis", minor) == (
        f"/apis/{version}/namespaces/redis/poddisruptionbudgets/redis"
    )
    # kinds that did not move are the same in every release
    assert kind_of("Service", minor).api_version == "v1"


def test_objects_for_a_release_change_only_moved_kinds() -> None:
    assert for_release([PDB, SVC], (1, 20)) == [PDB, SVC]
    new = for_release([PDB, SVC], (1, 35))
    assert new[0] == {**PDB, "apiVersion": "policy/v1"} and new[1] == SVC
    assert PDB["apiVersion"] == "policy/v1beta1"  # the input is left alone


def test_requests_go_to_the_release_path() -> None:
    req = build_request("delete", "PodDisruptionBudget", "redis", "redis", minor=(1, 25))
    assert req.path == "/apis/policy/v1/namespaces/redis/poddisruptionbudgets/redis"
    req = build_request("list", "PodDisruptionBudget", minor=(1, 20))
    assert req.path == "/apis/policy/v1beta1/poddisruptionbudgets"


class Recording(HttpKubeAPI):
    """The client with its one network call replaced: answers /version with
    ``minor`` and everything else with an empty 200."""

    def __init__(self, minor: str) -> None:  # no kubeconfig: nothing is sent
        self.minor_text = minor
        self.sent: list[Request] = []
        self._release = None

    def _send_once(
        self, req: Request, kind: str, name: str | None, namespace: str | None
    ) -> tuple[int, dict[str, Any]]:
        self.sent.append(req)
        if req.path == "/version":
            return 200, {"major": "1", "minor": self.minor_text}
        return 200, {"items": []}


def test_the_client_asks_the_release_once_and_only_for_moved_kinds() -> None:
    api = Recording("29+")
    api.list("Service", "redis")
    assert [r.path for r in api.sent] == ["/api/v1/namespaces/redis/services"]
    api.apply(PDB)
    api.delete("PodDisruptionBudget", "redis", "redis")
    paths = [r.path.split("?")[0] for r in api.sent]
    assert paths == [
        "/api/v1/namespaces/redis/services",
        "/version",
        "/apis/policy/v1/namespaces/redis/poddisruptionbudgets/redis",
        "/apis/policy/v1/namespaces/redis/poddisruptionbudgets/redis",
    ]
    # the body says what the path says
    assert b'"apiVersion": "policy/v1"' in (api.sent[2].body or b"")


def test_on_the_labs_release_nothing_changes() -> None:
    api = Recording("20")
    api.apply(PDB)
    assert api.sent[-1].path.startswith(
        "/apis/policy/v1beta1/namespaces/redis/poddisruptionbudgets/redis"
    )
    assert b'"apiVersion": "policy/v1beta1"' in (api.sent[-1].body or b"")


def test_app_render_writes_the_releases_api_versions(capsys: pytest.CaptureFixture[str]) -> None:
    # the default is the release `kubeprem init` writes
    assert main(["app", "render", "redis"]) == 0
    out = capsys.readouterr().out
    assert "apiVersion: policy/v1\n" in out and "policy/v1beta1" not in out
    assert main(["app", "render", "redis", "--kubernetes-version", "1.20"]) == 0
    assert "apiVersion: policy/v1beta1" in capsys.readouterr().out
    assert main(["app", "render", "redis", "--kubernetes-version", "latest"]) == 2
    assert "is not a version like 1.37" in capsys.readouterr().err


def test_rendering_for_a_release_sets_its_api_versions() -> None:
    from kubeprem.apps import workflow
    from kubeprem.apps.catalog import APPS
    from kubeprem.images import image_refs
    from tests.unit.test_apps import Counting

    app = APPS["postgresql"]

    def pdb_versions(release: tuple[int, int] | None) -> set[str]:
        r = workflow.render(app, app.values(), image_refs(), Counting(), release=release)
        return {o["apiVersion"] for o in r.objects if o["kind"] == "PodDisruptionBudget"}

    assert pdb_versions(None) == pdb_versions((1, 20)) == {"policy/v1beta1"}
    assert pdb_versions((1, 25)) == {"policy/v1"}

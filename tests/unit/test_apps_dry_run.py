"""`app deploy --dry-run` on the fake API: checks and a server dry run, nothing
applied, no image imported, the namespaces made for the check removed again."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from kubeprem.apps import workflow
from kubeprem.apps.catalog import APPS
from kubeprem.apps.values import parse_values
from kubeprem.cli import app_cmds
from kubeprem.cli.main import main
from kubeprem.errors import InputError, OperationError
from kubeprem.images import image_refs
from kubeprem.kube import FakeKubeAPI
from kubeprem.kube.api import KubeError, Obj
from kubeprem.site import LoadedSite, Site, example_text
from tests.unit.test_apps import Counting, cluster_api, rendered

IMAGES = image_refs()

BBB_VALUES = """\
domain: bbb.uni.example
servers:
  - {name: worker-1, public_ipv4: 198.51.100.11}
  - {name: worker-2, public_ipv4: 198.51.100.12, enabled: false}
"""


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(example_text(), encoding="utf-8")
    return path


@pytest.fixture
def imports(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every call of the CLI's image import (there must be none)."""
    calls: list[list[str]] = []

    def record(loaded: LoadedSite, refs: list[str]) -> None:
        calls.append(list(refs))

    monkeypatch.setattr(app_cmds, "import_app_images", record)
    return calls


def on_fake(monkeypatch: pytest.MonkeyPatch, api: FakeKubeAPI) -> None:
    monkeypatch.setattr(app_cmds, "kube_api", lambda loaded, kubeconfig: api)


def dry_runs(api: FakeKubeAPI) -> list[tuple[str, str | None, str]]:
    return [(k, ns, n) for verb, k, ns, n in api.calls if verb == "dry-run"]


def test_dry_run_validates_every_object_applies_nothing_and_removes_its_namespaces(
    site_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    imports: list[list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = cluster_api()
    on_fake(monkeypatch, api)
    values = tmp_path / "bbb.yaml"
    values.write_text(BBB_VALUES, encoding="utf-8")
    argv = ["app", "deploy", str(site_file), "bigbluebutton", "--values", str(values)]
    assert main([*argv, "--dry-run"]) == 0

    assert imports == []
    # the only writes: the three missing namespaces, made for the check
    assert sorted(api.applied()) == [
        ("Namespace", None, "bbb-worker-1"),
        ("Namespace", None, "bbb-worker-2"),
        ("Namespace", None, "bigbluebutton"),
    ]
    deleted = sorted(n for verb, k, _, n in api.calls if verb == "delete" and k == "Namespace")
    assert deleted == ["bbb-worker-1", "bbb-worker-2", "bigbluebutton"]
    assert [k for (k, _, _) in api.objects] == ["StorageClass"]  # as it was
    # every object of the app was dry-run, none of them stored (the Job's name
    # is a digest of the server list, whose secrets differ from render to render)
    app = APPS["bigbluebutton"]
    values = parse_values(app.values, BBB_VALUES, "bbb.yaml")
    objects = workflow.render(app, values, IMAGES, Counting()).objects

    def names(seen: list[tuple[str, str | None, str]]) -> list[tuple[str, str | None, str]]:
        return sorted((k, ns, "" if k == "Job" else n) for k, ns, n in seen)

    assert names(dry_runs(api)) == names(
        [
            (str(o["kind"]), o["metadata"].get("namespace"), str(o["metadata"]["name"]))
            for o in objects
        ]
    )
    out = capsys.readouterr().out
    assert f"all {len(objects)} objects: {len(objects)} would be created, 0 would change" in out
    assert "nothing applied, no image imported" in out
    assert "created for the dry run and deleted again" in out
    assert "bbb-worker-1" in out


def test_dry_run_of_a_deployed_app_says_what_would_change_and_keeps_its_namespace(
    example_site: Site,
) -> None:
    api = cluster_api()
    app = APPS["redis"]
    deployed = workflow.render(app, app.values(), IMAGES, Counting(), api)
    workflow.deploy(api, deployed, example_site)
    before = dict(api.objects)
    api.calls.clear()

    same = workflow.render(app, app.values(), IMAGES, Counting(), api)  # passwords kept
    result = workflow.dry_run(api, same, example_site)
    assert result.namespaces == () and result.left == ()
    assert {a for a, _ in result.planned} == {"unchanged"}
    assert api.applied() == [] and api.objects == before

    bigger = workflow.render(app, app.values(proxies=3), IMAGES, Counting(), api)
    lines: list[str] = []
    result = workflow.dry_run(api, bigger, example_site, progress=lines.append)
    changed = [obj for a, obj in result.planned if a == "change"]
    assert changed == ["Deployment redis/redis-proxy"]
    assert "validated Deployment redis/redis-proxy: would change" in lines
    assert api.applied() == [] and api.objects == before
    assert not [c for c in api.calls if c[0] == "delete"]  # the namespace existed


def test_a_refused_manifest_exits_2_imports_nothing_and_removes_the_namespaces(
    site_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    imports: list[list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = cluster_api()
    api.refuse = lambda verb, o: "bad port" if o["kind"] == "StatefulSet" else None
    on_fake(monkeypatch, api)
    assert main(["app", "deploy", str(site_file), "postgresql", "--dry-run"]) == 2
    assert imports == []
    assert api.applied() == [("Namespace", None, "postgresql")]
    assert [k for (k, _, _) in api.objects] == ["StorageClass"]
    err = capsys.readouterr().err
    assert "refused the manifests" in err and "nothing applied" in err and "bad port" in err


def test_bad_input_before_the_dry_run_exits_2_and_creates_nothing(
    site_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    imports: list[list[str]],
) -> None:
    no_class = FakeKubeAPI()  # preflight: no default StorageClass
    on_fake(monkeypatch, no_class)
    assert main(["app", "deploy", str(site_file), "redis", "--dry-run"]) == 2
    assert no_class.applied() == [] and no_class.objects == {}

    api = cluster_api()
    on_fake(monkeypatch, api)
    broken = tmp_path / "broken.yaml"
    broken.write_text("sentinels: 3\nstorage:\n  sise: 1Gi\n", encoding="utf-8")
    argv = ["app", "deploy", str(site_file), "redis", "--values", str(broken), "--dry-run"]
    assert main(argv) == 2
    assert api.calls == []
    assert imports == []


class Unavailable(FakeKubeAPI):
    """Answers every dry run of a StatefulSet with 503: the cluster, not the input."""

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> Obj:
        if dry_run and obj["kind"] == "StatefulSet":
            self.calls.append(("dry-run", "StatefulSet", None, obj["metadata"]["name"]))
            raise KubeError("apply", "StatefulSet", "x", "ns", 503, "etcd unavailable")
        return super().apply(obj, dry_run=dry_run)


def test_a_failing_api_server_is_not_bad_input_and_the_namespaces_still_go(
    example_site: Site,
) -> None:
    api = Unavailable()
    api.put(next(iter(cluster_api().objects.values())))  # the default StorageClass
    with pytest.raises(KubeError) as err:
        workflow.dry_run(api, rendered("postgresql"), example_site)
    assert not isinstance(err.value, InputError) and isinstance(err.value, OperationError)
    assert [k for (k, _, _) in api.objects] == ["StorageClass"]


def test_namespaces_still_terminating_are_reported(example_site: Site) -> None:
    class Slow(FakeKubeAPI):
        def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
            self.calls.append(("delete", kind, namespace, name))
            return True  # accepted, but the namespace stays (terminating)

    api = Slow()
    api.put(next(iter(cluster_api().objects.values())))
    slept: list[float] = []
    result = workflow.dry_run(
        api, rendered("redis"), example_site, namespace_timeout=0.0, sleep=slept.append
    )
    assert result.namespaces == ("redis",) and result.left == ("redis",)

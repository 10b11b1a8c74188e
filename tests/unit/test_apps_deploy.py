"""`app deploy` on the fake API: the images it imports, and when it imports them."""

from __future__ import annotations

import pytest

from kubeprem.apps import workflow
from kubeprem.apps.catalog import APPS
from kubeprem.errors import InputError
from kubeprem.images import image_refs
from kubeprem.kube import FakeKubeAPI
from kubeprem.site import Site
from tests.unit.test_apps import Counting, cluster_api, rendered

IMAGES = image_refs()


def test_the_images_to_import_are_the_ones_the_pods_run() -> None:
    app = APPS["redis"]
    r = workflow.render(app, app.values(), IMAGES, Counting())
    assert workflow.image_refs_of(r.objects) == [
        IMAGES["redis"],
        IMAGES["redis-exporter"],
        IMAGES["haproxy"],
        IMAGES["cluster-dns"],  # the proxies' peer-watch sidecar (python3)
    ]
    assert workflow.image_refs_of(rendered("postgresql").objects) == [
        IMAGES["postgresql"],
        IMAGES["postgres-exporter"],
    ]


def test_images_are_imported_after_the_dry_run_and_never_on_bad_input(
    example_site: Site,
) -> None:
    seen: list[str] = []
    api = cluster_api()

    def before() -> None:
        seen.append("import")
        # nothing but the namespace is stored yet: the dry run came first
        assert [k for (k, _, _) in api.objects] == ["StorageClass", "Namespace"]

    workflow.deploy(api, rendered("postgresql"), example_site, before_apply=before)
    assert seen == ["import"]

    bad = FakeKubeAPI()  # no StorageClass at all
    with pytest.raises(InputError):
        workflow.deploy(bad, rendered("redis"), example_site, before_apply=before)
    refused = cluster_api()
    refused.refuse = lambda verb, o: "bad" if o["kind"] == "StatefulSet" else None
    with pytest.raises(InputError):
        workflow.deploy(refused, rendered("redis"), example_site, before_apply=before)
    assert seen == ["import"]


def test_statefulsets_do_not_wait_for_ordinals_and_volumes_are_regrouped_once() -> None:
    for app in ("redis", "postgresql"):
        for obj in rendered(app).objects:
            if obj["kind"] != "StatefulSet":
                continue
            spec = obj["spec"]
            assert spec["podManagementPolicy"] == "Parallel", obj["metadata"]["name"]
            ctx = spec["template"]["spec"]["securityContext"]
            assert ctx["fsGroupChangePolicy"] == "OnRootMismatch"


def test_haproxy_resolves_full_names_in_the_cluster_domain() -> None:
    cfg = next(
        o
        for o in rendered("redis", {"cluster_domain": "k8s.example"}).objects
        if o["kind"] == "ConfigMap"
    )["data"]["haproxy.cfg"]
    assert "redis-0.redis-headless.redis.svc.k8s.example:6379" in cfg

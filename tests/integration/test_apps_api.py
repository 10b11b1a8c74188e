"""Every manifest kubeprem renders, checked by a real kube-apiserver (1.20) on loopback:
server-side dry run of each object, then real server-side apply, get, ordering
and delete through kubeprem's own HTTP client.

The control plane is the rendered one (etcd with mutual TLS, kube-apiserver),
shared with the other integration tests (conftest.py); there are no controllers, so
workloads are created but never rolled out (rollouts are the lab's job).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeprem.apps import postgresql, storage, workflow
from kubeprem.apps.catalog import APPS
from kubeprem.errors import InputError
from kubeprem.images import image_refs
from kubeprem.kube import HttpKubeAPI, KubeError, apply_all, apply_order, load_kubeconfig
from kubeprem.site import parse_site
from tests.integration.conftest import Cluster
from tests.integration.realcluster import LOOPBACK_SITE, wait_for

pytestmark = pytest.mark.integration


class Counting:
    def __init__(self) -> None:
        self.n = 0

    def password(self, length: int = 32) -> object:
        from kubeprem.sensitive import Sensitive

        self.n += 1
        return Sensitive(f"pw{self.n:04d}")


@pytest.fixture(scope="module")
def api(loopback_api: Cluster) -> Iterator[HttpKubeAPI]:
    """kubeprem's own client, straight to an API server of the shared
    loopback control plane (HAProxy and the VIP are tested elsewhere)."""
    cfg = load_kubeconfig(loopback_api.out / "controller-0/etc/kubernetes/admin.conf")
    client = HttpKubeAPI(dataclasses.replace(cfg, server="https://127.0.0.10:6443"), timeout=10)

    def ready() -> bool:
        try:
            client.list("Namespace")
            return True
        except KubeError:
            return False

    wait_for(ready, 120, "the API server answering kubeprem's client")
    yield client
    client.close()


def _site() -> object:
    return parse_site(LOOPBACK_SITE, "site.yaml")[0]


def every_manifest() -> list[dict[str, object]]:
    images = image_refs()
    objects: list[dict[str, object]] = []
    for name, values in (
        ("redis", {}),
        ("redis", {"topology": "cluster", "namespace": "redis-cluster"}),
        ("postgresql", {}),
    ):
        app = APPS[name]
        r = workflow.render(app, app.values.model_validate(values), images, Counting())  # type: ignore[arg-type]
        objects += r.objects
    objects += postgresql.backup_objects(postgresql.PostgresValues(), images, "20240101t020000")
    return objects


def test_every_manifest_passes_a_server_side_dry_run(api: HttpKubeAPI) -> None:
    objects = every_manifest()
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    for ns in namespaces:  # namespaced objects are dry-run only in existing namespaces
        api.apply(ns)
    for obj in apply_order(o for o in objects if o["kind"] != "Namespace"):
        stored = api.apply(obj, dry_run=True)
        assert stored["kind"] == obj["kind"]
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        assert api.get(str(obj["kind"]), meta["name"], meta.get("namespace")) is None
    site = _site()
    sto = storage.storage_objects(site, storage.StoragePlan(size="1Gi", count=2))  # type: ignore[arg-type]
    apply_all(api, sto, dry_run=True)
    for ns in namespaces:
        api.delete("Namespace", str(ns["metadata"]["name"]))  # type: ignore[index]


def test_apply_get_order_and_delete_for_real(api: HttpKubeAPI) -> None:
    site = _site()
    # no default StorageClass yet: bad input, nothing applied
    r = workflow.render(
        APPS["redis"],
        APPS["redis"].values.model_validate({"namespace": "cache"}),
        image_refs(),
        Counting(),
        api,
    )  # type: ignore[arg-type]
    with pytest.raises(InputError, match="no StorageClass 'local'"):
        workflow.deploy(api, r, site, wait=False)  # type: ignore[arg-type]
    assert api.get("Namespace", "cache") is None
    sto = storage.storage_objects(site, storage.StoragePlan(size="1Gi", count=2))  # type: ignore[arg-type]
    apply_all(api, sto)
    rows = storage.volume_report(api.list("PersistentVolume"))
    assert len(rows) == 6 and {r.node for r in rows} == {"worker-0", "worker-1", "worker-2"}

    seen: list[str] = []
    workflow.deploy(api, r, site, wait=False, progress=seen.append)  # type: ignore[arg-type]
    applied = [line.removeprefix("applied ") for line in seen if line.startswith("applied ")]
    assert applied.index("Service cache/redis-headless") < applied.index("StatefulSet cache/redis")
    assert applied[0] == "Namespace cache" and applied[-1].startswith("PodDisruptionBudget")
    live = api.get("StatefulSet", "redis", "cache")
    assert live is not None and live["spec"]["replicas"] == 3
    managers = {m["manager"] for m in live["metadata"]["managedFields"]}
    assert "kubeprem" in managers
    # re-deploy keeps the password the cluster already has
    secret = api.get("Secret", "redis-auth", "cache")
    again = workflow.render(
        APPS["redis"],
        APPS["redis"].values.model_validate({"namespace": "cache"}),
        image_refs(),
        Counting(),
        api,
    )  # type: ignore[arg-type]
    workflow.deploy(api, again, site, wait=False)  # type: ignore[arg-type]
    assert api.get("Secret", "redis-auth", "cache")["data"] == secret["data"]  # type: ignore[index]
    # a server refusal names the object
    bad = dict(r.objects[-1])
    bad["spec"] = {"maxUnavailable": "lots"}
    with pytest.raises(KubeError) as info:
        api.apply(bad)
    assert info.value.status == 422 and "PodDisruptionBudget cache/redis" in str(info.value)

    gone = workflow.destroy(api, r, delete_data=False)
    assert gone[0] == "PodDisruptionBudget cache/redis-proxy"
    assert api.get("StatefulSet", "redis", "cache") is None
    assert api.get("Secret", "redis-auth", "cache") is not None
    workflow.destroy(api, r, delete_data=True)
    for pv in sto:
        api.delete(str(pv["kind"]), str(pv["metadata"]["name"]))  # type: ignore[index]
    # pv-protection finalizers wait for a controller-manager: deleted means terminating here
    for pv in api.list("PersistentVolume"):
        assert pv["metadata"].get("deletionTimestamp"), pv["metadata"]["name"]


def test_unknown_kubeconfig_path_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the kubeconfig"):
        load_kubeconfig(tmp_path / "missing.conf")

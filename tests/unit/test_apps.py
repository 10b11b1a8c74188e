"""Stateful apps: rendered manifests (golden), audit, values errors, deploy on the fake API."""

from __future__ import annotations

import argparse
import asyncio
import base64
from pathlib import Path

import pytest

from kubeprem.apps import postgresql, redis, storage, workflow
from kubeprem.apps.audit import audit_objects
from kubeprem.apps.base import Rendered, secret_values
from kubeprem.apps.catalog import APPS, app_def
from kubeprem.apps.values import load_values, parse_values
from kubeprem.errors import InputError, SiteError
from kubeprem.images import image_refs
from kubeprem.kube import FakeKubeAPI, apply_order
from kubeprem.sensitive import Sensitive
from kubeprem.site import Site
from kubeprem.transport.fake import FakeTransport
from tests.conftest import assert_golden

IMAGES = image_refs()


class Counting:
    """Deterministic passwords: pw0001, pw0002, ..."""

    def __init__(self) -> None:
        self.n = 0

    def password(self, length: int = 32) -> Sensitive[str]:
        self.n += 1
        return Sensitive(f"pw{self.n:04d}")


def rendered(app: str, values: dict[str, object] | None = None) -> Rendered:
    a = app_def(app)
    return workflow.render(a, a.values.model_validate(values or {}), IMAGES, Counting())


CASES = {
    "redis-sentinel": ("redis", {}),
    "redis-cluster": ("redis", {"topology": "cluster"}),
    "postgresql": ("postgresql", {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_manifests_match_golden_files(case: str) -> None:
    app, values = CASES[case]
    assert_golden(f"apps/{case}.yaml", workflow.to_yaml(rendered(app, values).objects))


def test_backup_job_and_storage_match_golden_files(example_site: Site) -> None:
    backup = postgresql.backup_objects(postgresql.PostgresValues(), IMAGES, "20240101t020000")
    assert_golden("apps/postgresql-backup.yaml", workflow.to_yaml(backup))
    objs = storage.storage_objects(example_site, storage.StoragePlan(size="5Gi", count=2))
    assert_golden("apps/storage.yaml", workflow.to_yaml(objs))


def test_every_rendered_manifest_passes_the_audit(example_site: Site) -> None:
    objects: list[dict[str, object]] = []
    for app, values in CASES.values():
        objects = list(rendered(app, values).objects)
        findings = [f for f in audit_objects(objects) if f.accepted is None]
        assert findings == [], [(f.rule, f.kind, f.name, f.message) for f in findings]
    extra = [
        *postgresql.backup_objects(postgresql.PostgresValues(), IMAGES, "x"),
        *storage.storage_objects(example_site, storage.StoragePlan()),
    ]
    assert [f for f in audit_objects(extra) if f.accepted is None] == []


def test_images_come_from_the_catalogue_and_are_never_pulled() -> None:
    for app, values in CASES.values():
        for obj in rendered(app, values).objects:
            tmpl = obj.get("spec", {}).get("template", {}).get("spec", {})
            for c in tmpl.get("containers", []):
                assert c["image"] in IMAGES.values()
                assert c["imagePullPolicy"] == "IfNotPresent"


def test_passwords_only_in_secrets_and_configuration_generated_at_start() -> None:
    for app, values in CASES.values():
        text = workflow.to_yaml(rendered(app, values).objects)
        assert "pw0001" not in text  # base64 in the Secret only
        secrets = [o for o in rendered(app, values).objects if o["kind"] == "Secret"]
        decoded = {base64.b64decode(v) for v in secrets[0]["data"].values()}
        assert b"pw0001" in decoded


def test_redis_settings_that_keep_acknowledged_writes() -> None:
    cm = next(o for o in rendered("redis").objects if o["kind"] == "ConfigMap")
    conf = cm["data"]["redis.conf"]
    for line in ("appendonly yes", "min-replicas-to-write 1", "dir /data"):
        assert line in conf.splitlines()
    assert "on-marked-down shutdown-sessions" in cm["data"]["haproxy.cfg"]
    assert "expect string role:master" in cm["data"]["haproxy.cfg"]
    primary = next(
        o
        for o in rendered("redis").objects
        if o["kind"] == "Service" and o["metadata"]["name"] == "redis"
    )
    assert primary["spec"]["selector"]["app.kubernetes.io/component"] == "proxy"


def test_postgresql_leader_service_has_no_selector_and_replicas_select_role_replica() -> None:
    objs = {(o["kind"], o["metadata"]["name"]): o for o in rendered("postgresql").objects}
    assert "selector" not in objs[("Service", "postgresql")]["spec"]
    assert objs[("Service", "postgresql-replicas")]["spec"]["selector"]["role"] == "replica"
    patroni = objs[("ConfigMap", "postgresql-config")]["data"]["patroni.yml"]
    assert "synchronous_mode: true" in patroni and "use_endpoints: true" in patroni


def test_values_file_errors_name_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "v.yaml"
    f.write_text("namespace: cache\nreplicas: 2\nstorage:\n  sise: 1Gi\n")
    with pytest.raises(SiteError) as info:
        load_values(redis.RedisValues, f)
    msg = str(info.value)
    assert f"{f}:2:11: replicas: must be greater than or equal to 3" in msg
    assert f"{f}:4:3: unknown key 'sise'; allowed here: size, class" in msg
    assert info.value.exit_status == 2
    with pytest.raises(SiteError, match="loop_wait"):
        parse_values(postgresql.PostgresValues, "ttl: 10\nloop_wait: 5\n", "pg.yaml")
    with pytest.raises(
        InputError, match="unknown app 'mongodb'; kubeprem knows: redis, postgresql"
    ):
        app_def("mongodb")


def storage_class(name: str, default: bool) -> dict[str, object]:
    ann = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {
        "kind": "StorageClass",
        "apiVersion": "storage.k8s.io/v1",
        "metadata": {"name": name, "annotations": ann},
    }


def ready(api: FakeKubeAPI, obj: dict[str, object]) -> None:
    """The fake's controllers: a workload is rolled out as soon as it is applied."""
    if obj["kind"] == "StatefulSet":
        obj["status"] = {
            "observedGeneration": obj["metadata"]["generation"],  # type: ignore[index]
            "readyReplicas": obj["spec"]["replicas"],  # type: ignore[index]
            "updatedReplicas": obj["spec"]["replicas"],  # type: ignore[index]
            "currentRevision": "r1",
            "updateRevision": "r1",
        }
    if obj["kind"] == "Deployment":
        n = obj["spec"]["replicas"]  # type: ignore[index]
        obj["status"] = {
            "observedGeneration": obj["metadata"]["generation"],  # type: ignore[index]
            "updatedReplicas": n,
            "replicas": n,
            "availableReplicas": n,
            "conditions": [{"type": "Available", "status": "True"}],
        }


def cluster_api() -> FakeKubeAPI:
    api = FakeKubeAPI()
    api.put(storage_class("local", True))
    api.on_apply = ready
    return api


def test_deploy_applies_in_order_waits_and_keeps_passwords(example_site: Site) -> None:
    api = cluster_api()
    app = APPS["redis"]
    r1 = workflow.render(app, redis.RedisValues(), IMAGES, Counting(), api)
    workflow.deploy(api, r1, example_site)
    applied = api.applied()
    assert applied[0] == ("Namespace", None, "redis")
    ranks = [k for k, _, _ in applied]
    assert ranks.index("Secret") < ranks.index("StatefulSet") < ranks.index("PodDisruptionBudget")
    names = [(k, n) for k, _, n in applied]
    assert names.index(("Service", "redis-headless")) < names.index(("Service", "redis"))
    assert names.index(("Service", "redis-headless")) < names.index(("StatefulSet", "redis"))
    # every object was dry-run before anything but the namespace was applied
    verbs = [v for v, *_ in api.calls if v in ("apply", "dry-run")]
    assert verbs.index("dry-run") < verbs.index("apply", 1)
    first = secret_values(api.get("Secret", "redis-auth", "redis"))["password"]
    r2 = workflow.render(app, redis.RedisValues(), IMAGES, Counting(), api)
    workflow.deploy(api, r2, example_site)
    assert secret_values(api.get("Secret", "redis-auth", "redis"))["password"] == first
    rows, _, _ = workflow.status(api, r2)
    assert all(w.done for w in rows) and len(rows) == 3


def test_no_default_storage_class_is_bad_input_and_nothing_is_applied(example_site: Site) -> None:
    api = FakeKubeAPI()
    r = rendered("postgresql", {"storage": {"class": None}})
    with pytest.raises(InputError, match="the cluster has none; run `kubeprem storage SITE`"):
        workflow.deploy(api, r, example_site)
    api.put(storage_class("other", False))
    with pytest.raises(InputError, match="no StorageClass 'local' in the cluster"):
        workflow.deploy(api, rendered("postgresql"), example_site)
    assert api.applied() == []


def test_required_anti_affinity_needs_enough_workers(example_site: Site) -> None:
    two = example_site.model_copy(update={"machines": example_site.machines[:-1]})
    api = cluster_api()
    with pytest.raises(InputError, match="3 pods on its own machine, but the site has 2 worker"):
        workflow.deploy(api, rendered("redis", {"anti_affinity": "required"}), two)
    assert api.applied() == []
    workflow.deploy(api, rendered("redis", {"anti_affinity": "required"}), example_site)


def test_a_refused_dry_run_is_bad_input_and_leaves_nothing(example_site: Site) -> None:
    api = cluster_api()
    api.refuse = lambda verb, o: "bad port" if o["kind"] == "Deployment" else None
    with pytest.raises(
        InputError, match=r"nothing applied.*Deployment redis/redis-proxy: HTTP 422"
    ):
        workflow.deploy(api, rendered("redis"), example_site)
    assert [k for k, _ in [(k, n) for (k, _, n) in api.objects]] == ["StorageClass"]


def test_destroy_keeps_claims_secret_and_namespace_unless_asked(example_site: Site) -> None:
    api = cluster_api()
    r = rendered("postgresql")
    workflow.deploy(api, r, example_site)
    claim = {
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "metadata": {
            "name": "data-postgresql-0",
            "namespace": "postgresql",
            "labels": {"app.kubernetes.io/name": "postgresql"},
        },
    }
    api.put(claim)
    workflow.destroy(api, r, delete_data=False)
    left = sorted(k for k, _, _ in api.objects)
    assert left == ["Namespace", "PersistentVolumeClaim", "Secret", "StorageClass"]
    workflow.destroy(api, r, delete_data=True)
    assert sorted(k for k, _, _ in api.objects) == ["StorageClass"]
    deletes = [(k, n) for v, k, _, n in api.calls if v == "delete"]
    assert deletes.index(("StatefulSet", "postgresql")) < deletes.index(
        ("Service", "postgresql-headless")
    )


def test_storage_volumes_are_node_affine_retained_and_made_by_argv(example_site: Site) -> None:
    plan = storage.StoragePlan(size="5Gi", count=2)
    objs = storage.storage_objects(example_site, plan)
    sc, pvs = objs[0], objs[1:]
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc["metadata"]["annotations"][storage.DEFAULT_ANNOTATION] == "true"
    assert len(pvs) == 6 and {p["spec"]["persistentVolumeReclaimPolicy"] for p in pvs} == {"Retain"}
    term = pvs[0]["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term == {"key": "kubernetes.io/hostname", "operator": "In", "values": ["worker-0"]}
    fake = FakeTransport("worker-0")
    fake.handle(["mkdir"], lambda f, argv, stdin: (0, "", ""))
    asyncio.run(storage.make_directories(fake, plan))
    assert [c.argv for c in fake.calls][-1] == (
        "mkdir",
        "-p",
        "-m",
        "0700",
        "/var/lib/kubeprem/volumes/vol0",
        "/var/lib/kubeprem/volumes/vol1",
    )
    with pytest.raises(InputError, match="must look like 10Gi"):
        storage.storage_objects(example_site, storage.StoragePlan(size="lots"))


def test_storage_status_counts_bound_released_and_free() -> None:
    def pv(name: str, phase: str, claim: bool) -> dict[str, object]:
        p = storage.persistent_volume("worker-0", int(name[-1]), storage.StoragePlan())
        p["metadata"]["name"] = name  # type: ignore[index]
        p["status"] = {"phase": phase}
        if claim:
            p["spec"]["claimRef"] = {"namespace": "redis", "name": "data-redis-0"}  # type: ignore[index]
        return p

    rows = storage.volume_report(
        [pv("v0", "Bound", True), pv("v1", "Released", True), pv("v2", "Available", False)]
    )
    assert storage.summary(rows) == {"bound": 1, "released": 1, "free": 1, "other": 0}
    assert rows[0].claim == "redis/data-redis-0" and rows[0].node == "worker-0"


def test_app_render_command_writes_one_file_per_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubeprem.cli import app_cmds

    parser = argparse.ArgumentParser()
    app_cmds.register(parser.add_subparsers())
    args = parser.parse_args(["app", "render", "redis", "--out", str(tmp_path)])
    assert args.handler(args) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files[0] == "00-namespace-redis.yaml" and len(files) == len(rendered("redis").objects)
    secret = next(p for p in tmp_path.iterdir() if "-secret-" in p.name)
    assert secret.stat().st_mode & 0o777 == 0o600
    args = parser.parse_args(["app", "render", "postgresql"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert [d.split("\n", 2)[1] for d in out.split("---")[:1]] == [
        "kind: Namespace"
    ] or "kind: Namespace" in out
    assert apply_order  # the same table orders the files

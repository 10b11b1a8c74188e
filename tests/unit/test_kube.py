"""The Kubernetes API boundary: paths, ordering, requests, rollout semantics, the fake."""

from __future__ import annotations

import base64
import json

import pytest

from kubeprem.errors import InputError, OperationError
from kubeprem.kube import (
    FakeKubeAPI,
    KubeError,
    apply_all,
    apply_order,
    build_request,
    delete_all,
    delete_order,
    parse_kubeconfig,
    path,
    rollout_state,
    wait_rolled_out,
)
from kubeprem.sensitive import Sensitive


def obj(kind: str, name: str, ns: str | None = "app", **spec: object) -> dict[str, object]:
    meta: dict[str, object] = {"name": name}
    if ns:
        meta["namespace"] = ns
    out: dict[str, object] = {"apiVersion": "v1", "kind": kind, "metadata": meta}
    if spec:
        out["spec"] = dict(spec)
    return out


def test_paths_for_core_group_namespaced_and_cluster_scoped_kinds() -> None:
    assert path("Secret", "s", "ns") == "/api/v1/namespaces/ns/secrets/s"
    assert path("StatefulSet", None, "ns") == "/apis/apps/v1/namespaces/ns/statefulsets"
    assert path("StorageClass", "local") == "/apis/storage.k8s.io/v1/storageclasses/local"
    assert path("PodDisruptionBudget", "p", "n").startswith("/apis/policy/v1beta1/")
    with pytest.raises(InputError, match="needs a namespace"):
        path("Secret", "s")
    with pytest.raises(InputError, match="does not handle the kind 'Gadget'"):
        path("Gadget", "g")


def test_apply_order_is_one_ranked_table_and_delete_is_its_reverse() -> None:
    objects = [
        obj("PodDisruptionBudget", "pdb"),
        obj("StatefulSet", "db"),
        obj("Service", "db"),
        obj("Service", "db-headless", clusterIP="None"),
        obj("PersistentVolumeClaim", "claim"),
        obj("PersistentVolume", "pv", None),
        obj("StorageClass", "local", None),
        obj("Role", "r"),
        obj("Secret", "s"),
        obj("Namespace", "app", None),
    ]
    kinds = [
        (o["kind"], o["metadata"]["name"])  # type: ignore[index]
        for o in apply_order(objects)
    ]
    assert kinds == [
        ("Namespace", "app"),
        ("Secret", "s"),
        ("Role", "r"),
        ("StorageClass", "local"),
        ("PersistentVolume", "pv"),
        ("PersistentVolumeClaim", "claim"),
        ("Service", "db-headless"),
        ("Service", "db"),
        ("StatefulSet", "db"),
        ("PodDisruptionBudget", "pdb"),
    ]
    assert delete_order(objects) == list(reversed(apply_order(objects)))


def test_apply_request_is_server_side_apply_with_field_manager_and_force() -> None:
    req = build_request("apply", "ConfigMap", "c", "ns", body={"kind": "ConfigMap"}, dry_run=True)
    assert req.method == "PATCH"
    assert req.path == (
        "/api/v1/namespaces/ns/configmaps/c?fieldManager=kubeprem&force=true&dryRun=All"
    )
    assert req.headers["Content-Type"] == "application/apply-patch+yaml"
    assert json.loads(req.body or b"") == {"kind": "ConfigMap"}
    listed = build_request("list", "Pod", None, "ns", label_selector="a=b,c=d")
    assert listed.path == "/api/v1/namespaces/ns/pods?labelSelector=a%3Db%2Cc%3Dd"
    assert build_request("list", "PersistentVolume").path == "/api/v1/persistentvolumes"
    assert build_request("delete", "Secret", "s", "ns").method == "DELETE"


def test_kube_errors_name_kind_namespace_name_status_and_message() -> None:
    err = KubeError(
        "apply", "StatefulSet", "redis", "redis", 422, "spec.replicas: Invalid", "Invalid"
    )
    assert str(err) == "apply StatefulSet redis/redis: HTTP 422 Invalid: spec.replicas: Invalid"
    assert isinstance(err, OperationError)
    assert "no answer" in str(KubeError("get", "Node", "n", None, None, "refused"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_kubeconfig_current_context_with_embedded_data() -> None:
    text = f"""
apiVersion: v1
kind: Config
current-context: admin@c
clusters:
- name: c
  cluster: {{server: "https://10.0.0.1:8443/", certificate-authority-data: {_b64(b"CA")}}}
contexts:
- name: admin@c
  context: {{cluster: c, user: admin}}
users:
- name: admin
  user: {{client-certificate-data: {_b64(b"CERT")}, client-key-data: {_b64(b"KEY")}}}
"""
    cfg = parse_kubeconfig(Sensitive(text), "admin.conf")
    assert (cfg.server, cfg.ca_pem, cfg.cert_pem) == ("https://10.0.0.1:8443", b"CA", b"CERT")
    assert cfg.key_pem.reveal() == b"KEY"
    assert "KEY" not in repr(cfg)
    with pytest.raises(InputError, match=r"admin\.conf: no user named 'admin'"):
        parse_kubeconfig(
            Sensitive(text.replace("- name: admin\n", "- name: other\n")), "admin.conf"
        )


def sts(gen: int = 2, **status: object) -> dict[str, object]:
    return {
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "n", "generation": gen},
        "spec": {"replicas": 3},
        "status": status,
    }


@pytest.mark.parametrize(
    ("status", "done", "why"),
    [
        ({"observedGeneration": 1}, False, "observe the new spec"),
        ({"observedGeneration": 2, "readyReplicas": 2}, False, "2 of 3 pods ready"),
        (
            {
                "observedGeneration": 2,
                "readyReplicas": 3,
                "updatedReplicas": 1,
                "currentRevision": "a",
                "updateRevision": "b",
            },
            False,
            "1 of 3 pods updated",
        ),
        (
            {
                "observedGeneration": 2,
                "readyReplicas": 3,
                "updatedReplicas": 3,
                "currentRevision": "b",
                "updateRevision": "b",
            },
            True,
            "",
        ),
    ],
)
def test_statefulset_rollout_like_kubectl(status: dict[str, object], done: bool, why: str) -> None:
    got_done, got_why = rollout_state(sts(**status))
    assert got_done is done and why in got_why


def test_deployment_rollout_needs_updated_available_and_the_available_condition() -> None:
    dep = {
        "kind": "Deployment",
        "metadata": {"generation": 1},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 1,
            "updatedReplicas": 2,
            "replicas": 3,
            "availableReplicas": 2,
        },
    }
    assert rollout_state(dep) == (False, "1 old pods pending termination")
    dep["status"] = {**dep["status"], "replicas": 2}  # type: ignore[dict-item]
    assert rollout_state(dep) == (False, "not Available")
    dep["status"]["conditions"] = [{"type": "Available", "status": "True"}]  # type: ignore[index]
    assert rollout_state(dep) == (True, "")


def test_fake_api_applies_bumps_generation_and_dry_runs_store_nothing() -> None:
    api = FakeKubeAPI()
    api.apply(obj("ConfigMap", "c"), dry_run=True)
    assert api.get("ConfigMap", "c", "app") is None
    api.apply(obj("StatefulSet", "db", replicas=1))
    api.apply(obj("StatefulSet", "db", replicas=1))
    assert api.objects[("StatefulSet", "app", "db")]["metadata"]["generation"] == 1
    api.apply(obj("StatefulSet", "db", replicas=2))
    assert api.objects[("StatefulSet", "app", "db")]["metadata"]["generation"] == 2
    assert api.delete("StatefulSet", "db", "app") is True
    assert api.delete("StatefulSet", "db", "app") is False


def test_apply_all_and_delete_all_follow_the_table() -> None:
    api = FakeKubeAPI()
    objects = [
        obj("StatefulSet", "db"),
        obj("Service", "h", clusterIP="None"),
        obj("Namespace", "app", None),
    ]
    apply_all(api, objects)
    assert [k for k, _, _ in api.applied()] == ["Namespace", "Service", "StatefulSet"]
    gone = delete_all(api, objects)
    assert gone == ["StatefulSet app/db", "Service app/h", "Namespace app"]


def test_wait_polls_until_rolled_out_and_times_out_with_the_reason() -> None:
    api = FakeKubeAPI()
    s = sts(gen=1)
    api.put(s)
    now = [0.0]
    polls = []

    def sleep(seconds: float) -> None:
        now[0] += seconds
        polls.append(now[0])
        if len(polls) == 2:
            api.set_status(
                "StatefulSet",
                "db",
                "n",
                {
                    "observedGeneration": 1,
                    "readyReplicas": 3,
                    "updatedReplicas": 3,
                    "currentRevision": "r",
                    "updateRevision": "r",
                },
            )

    wait_rolled_out(api, [s], clock=lambda: now[0], sleep=sleep, interval=1)
    assert polls == [1.0, 2.0]
    api.set_status("StatefulSet", "db", "n", {"observedGeneration": 1, "readyReplicas": 1})
    with pytest.raises(OperationError, match=r"StatefulSet n/db: 1 of 3 pods ready"):
        wait_rolled_out(api, [s], clock=lambda: now[0], sleep=sleep, timeout=5, interval=1)

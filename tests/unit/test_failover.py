"""Failover measurement: the client pod, its log parser, the numbers, the primary lookups."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from kubeprem.apps import workflow
from kubeprem.apps.base import FS_GROUP
from kubeprem.apps.catalog import APPS
from kubeprem.errors import OperationError
from kubeprem.images import image_refs
from kubeprem.kube import FakeKubeAPI
from kubeprem.workflows import failover as fo
from tests.unit.test_apps import Counting

LOG = """cat: something harmless
W 1 1000 ok
W 2 1100 ok
W 3 1200 fail I/O error Error: Server closed the connection
W 4 1400 fail NOREPLICAS Not enough good replicas to write.
W 5 1600 ok
W 6 1700 fail no answer
W 7 1800 ok
DONE 1900
LOST 2
VERIFY acked=4 lost=1 2000
"""


def test_parse_log_reads_writes_done_lost_and_verify() -> None:
    log = fo.parse_log(LOG)
    assert [w.seq for w in log.writes] == [1, 2, 3, 4, 5, 6, 7]
    assert [w.ok for w in log.writes] == [True, True, False, False, True, False, True]
    assert log.writes[3].detail == "NOREPLICAS Not enough good replicas to write."
    assert (log.done_ms, log.acked, log.lost, log.verified_ms) == (1900, 4, (2,), 2000)
    assert fo.parse_log("W 1 5 ok\n").acked is None  # the pod never got to the read-back


def test_measure_from_the_fault_to_the_first_acknowledged_write() -> None:
    writes = fo.parse_log(LOG).writes
    m = fo.measure(writes, fault_ms=1150)
    assert (m.first_fail, m.first_ok, m.last_fail, m.failed) == (0.05, 0.45, 0.55, 3)
    assert m.outage == 0.45
    calm = fo.measure(writes[:2], fault_ms=900)
    assert (calm.outage, calm.failed) == (0.0, 0)
    never = fo.measure(writes[:4], fault_ms=1150)
    assert never.outage is None and never.failed == 2


def test_client_pod_avoids_the_failing_machine_and_reads_the_secret_by_group() -> None:
    target = fo.TARGETS["redis"]
    pod = fo.client_pod(
        target,
        "img",
        name="c",
        prefix="c",
        duration=30,
        max_writes=100,
        pause=0.05,
        avoid_nodes=("worker-1",),
    )
    spec: dict[str, Any] = pod["spec"]
    expr = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"][0]
    assert expr == {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["worker-1"]}
    assert spec["securityContext"]["fsGroup"] == FS_GROUP
    assert spec["restartPolicy"] == "Never"
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["TARGET"] == "redis.redis.svc" and env["PAUSE"] == "0.05"
    script = spec["containers"][0]["command"][2]
    # acknowledged only when WAIT says a replica has the write
    assert "WAIT 1 1000" in script and '"${2:-0}" -ge 1' in script
    pg = fo.client_pod(
        fo.TARGETS["postgresql"], "img", name="c", prefix="c", duration=1, max_writes=1, pause=0
    )
    assert "synchronous_commit = on" in pg["spec"]["containers"][0]["command"][2]
    assert "affinity" not in pg["spec"]


def test_the_upgrade_writer_is_a_daemonset_pinned_to_one_node_that_stops_on_a_file() -> None:
    ds = fo.client_daemonset(
        fo.TARGETS["postgresql"], "img", name="w-1", node="worker-2", pause=0.1
    )
    assert ds["kind"] == "DaemonSet" and ds["metadata"]["namespace"] == "postgresql"
    template = ds["spec"]["template"]
    selector = ds["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    spec = template["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "worker-2"}
    assert spec["restartPolicy"] == "Always"  # the only policy a DaemonSet allows
    script = spec["containers"][0]["command"][2]
    # writes until /tmp/stop, reads back, then stays (a DaemonSet's pod never ends)
    assert "[ ! -e /tmp/stop ]; do" in script and "VERIFY" in script
    assert script.rstrip().endswith("exec sleep infinity")
    assert script.index("VERIFY") < script.index("exec sleep infinity")


def test_longest_gap_between_acknowledged_writes() -> None:
    writes = fo.parse_log(LOG).writes  # acknowledged at 1000, 1100, 1600, 1800
    assert fo.longest_gap(writes) == (0.5, 1100)
    assert fo.longest_gap(writes[:1]) == (0.0, None)


def pod(name: str, node: str, ip: str = "", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "ns", "labels": labels or {}},
        "spec": {"nodeName": node},
        "status": {"podIP": ip},
    }


def test_primary_lookups() -> None:
    api = FakeKubeAPI()
    sentinel = {"app.kubernetes.io/component": "sentinel"}
    api.put(pod("redis-sentinel-0", "worker-0", labels=sentinel))
    api.put(pod("redis-1", "worker-2"))
    answers = {"redis-sentinel-0": "redis-1.redis-headless.ns.svc\n6379\n"}
    assert fo.redis_primary(api, answers.__getitem__, "ns") == fo.Primary("redis-1", "worker-2")
    with pytest.raises(OperationError, match="no Sentinel named a primary"):
        fo.redis_primary(api, lambda p: "", "ns")

    db = {"app.kubernetes.io/component": "database"}
    api.put(pod("postgresql-0", "worker-0", "10.0.0.1", {**db, "role": "master"}))
    api.put(pod("postgresql-1", "worker-1", "10.0.0.2", {**db, "role": "replica"}))
    with pytest.raises(OperationError, match="no leader"):
        fo.postgresql_primary(api, "ns")
    api.put(
        {
            "kind": "Endpoints",
            "apiVersion": "v1",
            "metadata": {"name": "postgresql", "namespace": "ns"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}]}],
        }
    )
    assert fo.postgresql_primary(api, "ns") == fo.Primary("postgresql-0", "worker-0")


def test_a_target_in_another_namespace_writes_through_that_namespaces_service() -> None:
    """The lab fails over a BigBlueButton server's own Redis and PostgreSQL
    (namespace bbb-<server>): the same targets with the namespace replaced,
    whose Secret the BigBlueButton render holds there with the key the writer reads."""
    app = APPS["bigbluebutton"]
    values = app.values.model_validate({"servers": [{"name": "w1", "public_ipv4": "192.0.2.1"}]})
    objects = workflow.render(app, values, image_refs(), Counting()).objects
    reads = {"redis": "/etc/auth/password", "postgresql": "/etc/auth/superuser-password"}
    for name, usual in fo.TARGETS.items():
        target = replace(usual, namespace="bbb-w1")
        pod = fo.client_pod(target, "img", name="c", prefix="c", duration=1, max_writes=1, pause=0)
        assert pod["metadata"]["namespace"] == "bbb-w1"
        env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
        assert env["TARGET"] == f"{name}.bbb-w1.svc"
        secret = next(
            o
            for o in objects
            if o["kind"] == "Secret"
            and o["metadata"]["name"] == target.secret
            and o["metadata"]["namespace"] == "bbb-w1"
        )
        key = reads[name].rsplit("/", 1)[1]
        assert key in secret["data"] and reads[name] in target.script
        service = [
            o
            for o in objects
            if o["kind"] == "Service"
            and o["metadata"]["name"] == target.service
            and o["metadata"]["namespace"] == "bbb-w1"
        ]
        assert len(service) == 1


@pytest.mark.parametrize("app", sorted(fo.TARGETS))
def test_the_writer_pod_passes_the_audit(app: str) -> None:
    """The pod `verify --chaos` and bench/failover.py start passes kubeprem's
    own audit; what it leaves out (probes: a one-shot writer) is accepted
    with the reason."""
    from kubeprem.apps.audit import audit_objects

    pod = fo.client_pod(
        fo.TARGETS[app],  # type: ignore[index]
        "kubeprem.local/redis:7.0.15-bookworm",
        name="c",
        prefix="c",
        duration=30,
        max_writes=100,
        pause=0.05,
    )
    findings = audit_objects([pod])
    assert [(f.rule, f.message) for f in findings if f.accepted is None] == []
    assert sorted(f.rule for f in findings) == ["KP022", "KP023"]


class WriterCluster(FakeKubeAPI):
    """A fake API server whose DaemonSets start a Running pod, with the logs
    a test gives (one text per read, the last one repeated)."""

    def __init__(self, texts: list[str]) -> None:
        super().__init__()
        self.texts = texts
        self.on_apply = self._start

    @staticmethod
    def _start(api: FakeKubeAPI, obj: dict[str, Any]) -> None:
        if obj["kind"] == "DaemonSet":
            meta = obj["metadata"]
            api.put(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": meta["name"] + "-x1",
                        "namespace": meta["namespace"],
                        "labels": obj["spec"]["template"]["metadata"]["labels"],
                    },
                    "status": {"phase": "Running", "containerStatuses": [{"restartCount": 1}]},
                }
            )

    def logs(self, name: str, namespace: str, container: str | None = None) -> str:
        return self.texts.pop(0) if len(self.texts) > 1 else self.texts[0]


def test_a_writer_runs_until_told_to_stop_then_reports_what_it_lost() -> None:
    warm = "".join(f"W {i} {i * 100} ok\n" for i in range(1, 21))
    api = WriterCluster(
        ["W 1 100 ok\n", warm, warm, warm + "DONE 5000\nLOST 7\nVERIFY acked=20 lost=1 5100\n"]
    )
    w = fo.start_writer(api, fo.TARGETS["redis"], "img", node="worker-1", sleep=lambda _: None)
    assert (w.namespace, w.node) == ("redis", "worker-1")
    assert w.pod == f"{w.name}-x1"
    assert api.get("DaemonSet", w.name, "redis") is not None
    stopped: list[str] = []
    result = fo.stop_writer(api, w, lambda wr: stopped.append(wr.pod), sleep=lambda _: None)
    assert stopped == [w.pod]
    assert result.log.lost == (7,) and result.log.acked == 20
    assert result.restarts == 1  # a restarted writer began a new run: reported, not hidden
    assert result.to_json()["lost"] == [7]
    assert api.get("DaemonSet", w.name, "redis") is None  # removed after the read-back


def test_a_writer_that_never_reads_back_is_an_error() -> None:
    warm = "".join(f"W {i} {i * 100} ok\n" for i in range(1, 21))
    api = WriterCluster([warm])
    w = fo.start_writer(api, fo.TARGETS["postgresql"], "img", node="worker-0", sleep=lambda _: None)
    with pytest.raises(OperationError, match="read-back"):
        fo.stop_writer(api, w, lambda _: None, timeout=0, sleep=lambda _: None)

"""The smoke workload: manifests (golden, audit, spread), pod choice, and the
check against a fake controller that answers kubectl."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from kubeprem.addons import smoke
from kubeprem.apps.audit import audit_objects
from kubeprem.errors import OperationError
from kubeprem.site import Site
from kubeprem.transport.fake import FakeTransport
from kubeprem.yamltext import dump_yaml
from tests.conftest import assert_golden


def test_manifests_golden(example_site: Site) -> None:
    assert_golden("addons/smoke.yaml", dump_yaml(*smoke.manifests(example_site)))


def test_audit_clean_and_one_pod_per_worker(example_site: Site) -> None:
    objs = smoke.manifests(example_site)
    assert [f for f in audit_objects(objs) if f.accepted is None] == []
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == len(example_site.workers) == 3
    [spread] = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["maxSkew"] == 1 and spread["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["topologyKey"] == "kubernetes.io/hostname"


def pod_json(name: str, node: str, ip: str, ready: bool = True) -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "spec": {"nodeName": node},
        "status": {
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


PODS = {
    "items": [
        pod_json("smoke-b", "worker-1", "10.200.1.3"),
        pod_json("smoke-a", "worker-0", "10.200.0.3"),
        pod_json("smoke-c", "worker-2", "10.200.2.3", ready=False),
    ]
}


def test_pick_a_pod_on_another_node() -> None:
    pods = smoke.parse_pods(PODS)
    assert [p.name for p in pods] == ["smoke-a", "smoke-b", "smoke-c"]
    client, other = smoke.pick(pods)
    assert (client.name, other and other.name) == ("smoke-a", "smoke-b")
    lone = smoke.parse_pods({"items": [pod_json("smoke-a", "worker-0", "10.200.0.3")]})
    assert smoke.pick(lone)[1] is None
    with pytest.raises(OperationError, match="no smoke pod is ready"):
        smoke.pick([])


def test_body() -> None:
    assert smoke.body("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmoke-b\n") == "smoke-b"
    assert smoke.body("garbage") == ""


def fake_cluster(pages: dict[str, str], unresolved: int = 0) -> FakeTransport:
    """kubectl get -> PODS; kubectl exec ... HOST PORT -> the page of HOST;
    names (not addresses) fail to resolve the first ``unresolved`` times."""
    fake = FakeTransport("controller-0")
    misses = [unresolved]

    def answer(
        f: FakeTransport, argv: tuple[str, ...], stdin: bytes | None
    ) -> tuple[int, str, str]:
        if argv[3] == "get":
            return 0, json.dumps(PODS), ""
        host = argv[-2]
        if not host[0].isdigit() and misses[0] > 0:
            misses[0] -= 1
            return 1, "", "nc: bad address"
        if host not in pages:
            return 1, "", "nc: bad address"
        return 0, f"HTTP/1.0 200 OK\r\n\r\n{pages[host]}\n", ""

    fake.handle(("/usr/local/bin/kubectl",), answer)
    return fake


def test_check_reaches_another_node_and_the_service(example_site: Site) -> None:
    fake = fake_cluster(
        {"10.200.1.3": "smoke-b", "smoke.kubeprem-smoke.svc.cluster.local": "smoke-a"}
    )
    evidence = asyncio.run(smoke.smoke_check(fake, example_site))
    assert evidence == (
        "smoke-a@worker-0 -> smoke-b@worker-1 (10.200.1.3); "
        "smoke-a -> smoke.kubeprem-smoke.svc.cluster.local answered by smoke-a"
    )
    execs = [c for c in fake.commands() if c[3] == "exec"]
    assert all(c[c.index("--") + 1 :][:3] == ("/bin/busybox", "sh", "-c") for c in execs)
    assert [c[-2:] for c in execs] == [
        ("10.200.1.3", "8080"),
        ("smoke.kubeprem-smoke.svc.cluster.local", "80"),
    ]


def test_check_fails_when_the_name_does_not_resolve(example_site: Site) -> None:
    fake = fake_cluster({"10.200.1.3": "smoke-b"})
    with pytest.raises(
        OperationError, match=re.escape("could not fetch http://smoke.kubeprem-smoke")
    ):
        asyncio.run(smoke.smoke_check(fake, example_site, settle=0))


def test_check_tries_again_while_the_service_settles(example_site: Site) -> None:
    fake = fake_cluster(
        {"10.200.1.3": "smoke-b", "smoke.kubeprem-smoke.svc.cluster.local": "smoke-a"},
        unresolved=2,
    )
    evidence = asyncio.run(smoke.smoke_check(fake, example_site, settle=30))
    assert evidence.endswith("answered by smoke-a")
    lookups = [c for c in fake.commands() if c[-2].startswith("smoke.")]
    assert len(lookups) == 3


def test_check_fails_on_a_wrong_page(example_site: Site) -> None:
    fake = fake_cluster({"10.200.1.3": "something else"})
    with pytest.raises(OperationError, match="not the page of smoke-b"):
        asyncio.run(smoke.smoke_check(fake, example_site))

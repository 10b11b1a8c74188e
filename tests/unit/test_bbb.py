"""BigBlueButton: rendered manifests (golden), audit, passwords, values, ports, status lines."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kubeprem.apps import bigbluebutton as bbb
from kubeprem.apps import workflow
from kubeprem.apps.audit import audit_objects
from kubeprem.apps.bigbluebutton import ports, secrets
from kubeprem.apps.bigbluebutton.server import NODE_LABEL, WORKERS
from kubeprem.apps.catalog import APPS
from kubeprem.apps.values import parse_values
from kubeprem.errors import InputError, SiteError
from kubeprem.images import image_refs
from kubeprem.kube import FakeKubeAPI
from kubeprem.sensitive import Sensitive
from tests.conftest import assert_golden

IMAGES = image_refs()
TWO = {
    "domain": "bbb.uni.example",
    "servers": [
        {"name": "a", "public_ipv4": "198.51.100.10"},
        {"name": "b", "public_ipv4": "198.51.100.11", "enabled": False},
    ],
}


class Counting:
    def __init__(self, first: str = "pw") -> None:
        self.n, self.first = 0, first

    def password(self, length: int = 32) -> Sensitive[str]:
        self.n += 1
        return Sensitive(f"{self.first}{self.n:04d}")


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    app = APPS["bigbluebutton"]
    r = workflow.render(app, app.values.model_validate(values or {}), IMAGES, Counting())
    return list(r.objects)


def pods(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [
        (o, o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("StatefulSet", "Deployment", "Job")
    ]


@pytest.mark.parametrize("case", ["default", "two-servers"])
def test_rendered_manifests_match_golden_files(case: str) -> None:
    objects = render(TWO if case == "two-servers" else None)
    assert_golden(f"bbb/{case}.yaml", workflow.to_yaml(objects))


def test_audit_reports_nothing_unaccepted_and_host_network_only_for_media() -> None:
    objects = render(TWO)
    open_findings = [f for f in audit_objects(objects) if f.accepted is None]
    assert open_findings == [], [(f.rule, f.name, f.message) for f in open_findings]
    for o, spec in pods(objects):
        host = spec.get("hostNetwork", False)
        assert host == (o["metadata"]["name"] == "media"), o["metadata"]["name"]
        for c in spec["containers"]:
            added = c["securityContext"]["capabilities"].get("add", [])
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            allowed = {
                "freeswitch": set(added),
                "webrtc-sfu": {"IPC_LOCK"},
                "nginx": {"NET_BIND_SERVICE"},
            }.get(c["name"], set())
            assert set(added) <= allowed, c["name"]
            if c["name"] not in WORKERS | {"poller", "recording-importer"} and o["kind"] != "Job":
                assert "readinessProbe" in c and "livenessProbe" in c, c["name"]
            assert "requests" in c["resources"] and "memory" in c["resources"]["limits"]


def test_each_server_is_pinned_to_its_own_node_and_shares_one_claim() -> None:
    objects = render(TWO)
    for name in ("a", "b"):
        sets = [
            o
            for o in objects
            if o["kind"] == "StatefulSet"
            and o["metadata"]["namespace"] == f"bbb-{name}"
            and o["metadata"]["name"] in ("bbb", "media")
        ]
        assert len(sets) == 2
        for s in sets:
            spec = s["spec"]["template"]["spec"]
            assert s["spec"]["replicas"] == 1
            assert spec["nodeSelector"] == {NODE_LABEL: name}
            term = spec["affinity"]["podAntiAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"
            ][0]
            assert term["namespaces"] == ["bbb-a", "bbb-b"]
            claims = {
                v["persistentVolumeClaim"]["claimName"]
                for v in spec["volumes"]
                if "persistentVolumeClaim" in v
            }
            assert claims == {"server-data"}


def test_databases_hasura_app_kept_bbb_graphql_recreated_at_each_start() -> None:
    objects = render()
    app = next(o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "bbb")
    init = app["spec"]["template"]["spec"]["initContainers"][0]
    script = init["command"][-1]
    assert "DROP DATABASE IF EXISTS bbb_graphql" in script
    assert "CREATE DATABASE bbb_graphql" in script
    assert "DROP DATABASE IF EXISTS hasura_app" not in script
    assert "WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'hasura_app')" in script
    assert init["image"] == IMAGES["postgresql"]


def _all_strings(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _all_strings(v)] + [str(k) for k in obj]
    if isinstance(obj, list):
        return [s for v in obj for s in _all_strings(v)]
    return [str(obj)]


def test_no_published_default_password_can_end_up_in_any_object() -> None:
    objects = render(TWO)
    text = "\n".join(_all_strings(objects))
    values = []  # every password-like value: Secret data and literal env values
    for o in objects:
        if o["kind"] == "Secret":
            values += [base64.b64decode(v).decode() for v in o["data"].values()]
        for _, spec in pods([o]):
            for c in [*spec["containers"], *spec.get("initContainers", [])]:
                values += [str(e["value"]) for e in c.get("env", []) if "value" in e]
    for default in secrets.KNOWN_DEFAULTS:
        assert all(default.lower() != v.lower() for v in values), default
        if default.lower() not in ("password", "changeme"):  # distinctive: nowhere at all
            assert default.lower() not in text.lower(), default
            assert all(default not in v for v in values), default
    for o in objects:  # and no password outside Secrets
        if o["kind"] == "ConfigMap":
            assert not any(k.endswith(("password", "secret")) for k in o["data"])
    with pytest.raises(InputError, match="published default"):
        secrets.refuse_defaults([Sensitive("ClueCon")])


def test_passwords_are_generated_once_and_derived_stably() -> None:
    master = secrets.passwords({}, Counting())
    assert list(master) == ["master-key"]
    again = secrets.passwords(master, Counting("other"))
    assert again == master
    a1 = secrets.server_passwords(master["master-key"], "a")
    a2 = secrets.server_passwords(master["master-key"], "a")
    b = secrets.server_passwords(master["master-key"], "b")
    assert a1 == a2 and a1["esl-password"] != b["esl-password"]
    assert len({v.reveal() for v in a1.values()}) == len(a1)
    assert all(len(v.reveal()) == secrets.SERVER_KEYS[k] for k, v in a1.items())


def test_deploy_keeps_the_master_key_found_in_the_cluster() -> None:
    api = FakeKubeAPI()
    app = APPS["bigbluebutton"]
    first = workflow.render(app, app.values.model_validate({}), IMAGES, Counting())
    api.apply(next(o for o in first.objects if o["metadata"]["name"] == "bigbluebutton-auth"))
    second = workflow.render(app, app.values.model_validate({}), IMAGES, Counting("new"), api)
    assert workflow.to_yaml(first.objects) == workflow.to_yaml(second.objects)


def test_announced_public_address_and_bound_private_address() -> None:
    objects = render(TWO)
    media = next(
        o
        for o in objects
        if o["metadata"].get("namespace") == "bbb-a" and o["metadata"]["name"] == "media"
    )
    env = {
        c["name"]: {e["name"]: e for e in c.get("env", [])}
        for c in media["spec"]["template"]["spec"]["containers"]
    }
    listen = json.loads(env["webrtc-sfu"]["MS_WEBRTC_LISTEN_IPS"]["value"])
    assert listen == [{"ip": "$(HOST_IP)", "announcedIp": "198.51.100.10"}]
    assert env["freeswitch"]["EXTERNAL_IPv4"]["value"] == "198.51.100.10"
    assert env["coturn"]["PUBLIC_IP"]["value"] == "198.51.100.10"
    assert env["coturn"]["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert media["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_network_policies_admit_only_the_servers_own_pods_to_redis_and_postgresql() -> None:
    objects = render(TWO)
    pols = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o["spec"]
        for o in objects
        if o["kind"] == "NetworkPolicy"
    }
    pg = pols[("bbb-a", "postgresql-clients")]
    rule = pg["ingress"][0]
    assert rule["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "bigbluebutton",
                    "app.kubernetes.io/component": "server",
                }
            }
        }
    ]
    assert rule["ports"] == [{"port": 5432, "protocol": "TCP"}]
    # no rule admits 5432 or 6379 from other namespaces
    for spec in pols.values():
        for r in spec["ingress"]:
            for f in r.get("from", []):
                assert "namespaceSelector" not in f
            if "from" not in r:
                assert {p["port"] for p in r["ports"]} <= {9121, 9187}


def test_scalelite_list_drains_a_disabled_server_with_cordon() -> None:
    objects = render(TWO)
    job = next(o for o in objects if o["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "bin/rake",
        "servers:sync[/etc/scalelite-servers/servers.yaml,cordon]",
    ]
    listing = next(o for o in objects if o["metadata"]["name"] == "scalelite-servers")
    text = base64.b64decode(listing["data"]["servers.yaml"]).decode()
    assert "a.bbb.uni.example:" in text and "enabled: false" in text
    for name in ("scalelite-poller", "scalelite-recording-importer"):
        d = next(o for o in objects if o["metadata"]["name"] == name)
        assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"] == {"type": "Recreate"}
    vols = [v for _, spec in pods(objects) for v in spec.get("volumes", []) if "nfs" in v]
    assert vols and all(
        v["nfs"] == {"server": "nfs.bbb.example.org", "path": "/export/bbb-recordings"}
        for v in vols
    )


def test_values_errors_point_at_the_line() -> None:
    text = (
        "servers:\n  - name: a\n    public_ipv4: 203.0.113.1\n  - name: a\n    public_ipv4: nope\n"
    )
    with pytest.raises(SiteError) as info:
        parse_values(bbb.BBBValues, text, "bbb.yaml")
    assert "bbb.yaml:5" in str(info.value)
    with pytest.raises(SiteError, match="unique"):
        parse_values(bbb.BBBValues, text.replace("nope", "203.0.113.2"), "bbb.yaml")
    with pytest.raises(SiteError, match="unknown component"):
        parse_values(bbb.BBBValues, "sizes:\n  kurento: {cpu: '1', memory: 1Gi}\n", "bbb.yaml")
    v = parse_values(bbb.BBBValues, "images:\n  registry: mirror.local/bbb\n  tag: v3.0.9\n", "f")
    assert v.image("bbb-web") == "mirror.local/bbb/bbb-docker-bbb-web:v3.0.9"


def test_status_lines_list_the_firewall_ports() -> None:
    v = bbb.BBBValues.model_validate(TWO)
    lines = "\n".join(APPS["bigbluebutton"].status_notes(v))  # type: ignore[misc]
    for port in ("80/tcp", "443/tcp", "16384-32768/udp", "3478/udp", "5349/tcp", "32769-65535/udp"):
        assert port in lines
    assert "198.51.100.11" in lines and "draining" in lines


def test_docs_table_names_every_host_network_component() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "bigbluebutton.md").read_text()
    for name in ports.HOST_NETWORK:
        assert f"| {name} | node" in doc, name


def test_every_redis_uses_the_sites_cluster_domain_in_its_full_names() -> None:
    """Each Redis (Scalelite's and every server's) writes full names into
    HAProxy's configuration; a site whose DNS domain is not cluster.local
    must get its own domain there (the app commands fill it in from the site)."""
    objects = render({**TWO, "cluster_domain": "dc1.example"})
    configs = [
        o["data"]["haproxy.cfg"]
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "redis-config"
    ]
    assert len(configs) == 3  # Scalelite's and one per server
    for cfg in configs:
        assert ".svc.dc1.example:6379" in cfg
        assert "cluster.local" not in cfg

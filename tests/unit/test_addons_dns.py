"""Cluster DNS: which server, rendered manifests (golden, audit), the
controller's hosts file from API JSON, its DNS packets, and the check."""

from __future__ import annotations

import asyncio
import re
import struct

import pytest

from kubeprem.addons import cluster_dns as ctl
from kubeprem.addons import dns
from kubeprem.apps.audit import audit_objects
from kubeprem.errors import OperationError
from kubeprem.site import Site, example_text, parse_site
from kubeprem.transport.fake import FakeTransport
from kubeprem.yamltext import dump_yaml
from tests.conftest import assert_golden, site_with_version

COREDNS = "registry.k8s.io/coredns/coredns:v1.11.1"


def with_images(*names: str, version: str = "1.37.2") -> Site:
    """The example at ``version`` with the site's own image archives ``names``."""
    text = re.sub(
        r'kubernetes_version: "[0-9.]+"', f'kubernetes_version: "{version}"', example_text()
    )
    listing = "".join(f"\n  - name: {n}\n    archive: {n.rsplit('/', 1)[-1]}.tar" for n in names)
    if names:
        text = text.replace("images: []", f"images:{listing}\n#")
    site, _ = parse_site(text, "site.yaml")
    assert site.cluster.version == version
    return site


def test_server_auto_runs_coredns_from_the_catalogue_on_go_module_releases() -> None:
    for version in ("1.35.4", "1.37.2"):
        site = with_images(version=version)
        assert dns.server(site) == "coredns"
        # CoreDNS, and python3 for its peer-watch sidecar
        assert dns.catalogue_images(site) == ("coredns", "cluster-dns")
        assert dns.catalogue_images(site, dns.DnsOptions(replicas=1)) == ("coredns",)
        assert dns.site_coredns_image(site) is None
        assert dns.coredns_image(site) == "kubeprem.local/coredns:1.15.0-bookworm"
        assert dns.coredns_image(site, {"coredns": "mirror.example/dns/coredns:1.15.0"}) == (
            "mirror.example/dns/coredns:1.15.0"
        )
        # the operator may still choose the dnsmasq server
        forced = dns.DnsOptions(server="dnsmasq")
        assert dns.server(site, forced) == "dnsmasq"
        assert dns.catalogue_images(site, forced) == ("cluster-dns",)


def test_server_auto_keeps_dnsmasq_on_the_legacy_release() -> None:
    legacy = with_images(version="1.20.2")
    assert dns.server(legacy) == "dnsmasq"
    assert dns.catalogue_images(legacy) == ("cluster-dns",)
    assert dns.coredns_image(legacy) is None
    with pytest.raises(OperationError, match=r"needs a CoreDNS image.*not 1\.20\.2"):
        dns.server(legacy, dns.DnsOptions(server="coredns"))


def test_server_auto_follows_the_sites_own_coredns_image() -> None:
    for version in ("1.20.2", "1.37.2"):
        site = with_images("mirror.example/pause:3.2", COREDNS, version=version)
        assert dns.site_coredns_image(site) == COREDNS == dns.coredns_image(site)
        # the site's archive is imported with the others: only the sidecar's image
        assert dns.server(site) == "coredns"
        assert dns.catalogue_images(site) == ("cluster-dns",)
        assert dns.server(site, dns.DnsOptions(server="dnsmasq")) == "dnsmasq"
    assert dns.site_coredns_image(with_images("coredns/coredns:1.8.0")) == "coredns/coredns:1.8.0"
    assert dns.site_coredns_image(with_images("example/not-coredns:1")) is None


def test_legacy_manifests_golden() -> None:
    site = with_images(version="1.20.2")
    assert_golden("addons/dns-dnsmasq.yaml", dns.manifests_text(site))


def test_coredns_manifests_golden(example_site: Site) -> None:
    """The example (1.37.2): the catalogue's CoreDNS, air-gapped."""
    assert dns.server(example_site) == "coredns"
    assert_golden("addons/dns-coredns.yaml", dns.manifests_text(example_site))


def test_coredns_with_upstream_and_the_sites_image_golden() -> None:
    site = with_images(COREDNS, version="1.37.2")
    options = dns.DnsOptions(upstream=("192.0.2.53", "192.0.2.54"))
    assert_golden("addons/dns-coredns-upstream.yaml", dns.manifests_text(site, options))


def test_corefile_serves_the_cluster_zones_and_forwards_only_with_upstream(
    example_site: Site,
) -> None:
    closed = dns.corefile(example_site)
    zones = "cluster.local 0.32.10.in-addr.arpa 200.10.in-addr.arpa"
    # no "." block: CoreDNS refuses names of no block, nothing is forwarded
    assert closed.startswith(
        "cluster.local:5353 0.32.10.in-addr.arpa:5353 200.10.in-addr.arpa:5353 {\n"
    )
    assert f"    kubernetes {zones} {{\n" in closed
    assert ".:5353" not in closed and "forward" not in closed and "loop" not in closed
    up = dns.corefile(example_site, dns.DnsOptions(upstream=("192.0.2.53",)))
    assert up.startswith(closed)
    rest = up[len(closed) :]
    assert rest.startswith(".:5353 {\n") and "    forward . 192.0.2.53\n    loop\n" in rest
    # health and ready are process-wide: once
    assert up.count("health") == 1 and up.count("ready") == 1


def test_check_pod_golden(example_site: Site) -> None:
    assert_golden("addons/dns-check-pod.yaml", dump_yaml(dns.check_pod(example_site)))


@pytest.mark.parametrize("server", ["dnsmasq", "coredns"])
def test_audit_clean(server: str) -> None:
    sites = (
        [with_images(), with_images(COREDNS)]
        if server == "coredns"
        else [with_images(version="1.20.2")]
    )
    for site in sites:
        assert dns.server(site) == server
        objects = [*dns.manifests(site), dns.check_pod(site)]
        assert [f for f in audit_objects(objects) if f.accepted is None] == []


def test_coredns_manifest_shape(example_site: Site) -> None:
    objs = {o["kind"]: o for o in dns.manifests(example_site)}
    rules = objs["ClusterRole"]["rules"]
    assert {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["list", "watch"],
    } in rules
    assert {
        "apiGroups": [""],
        "resources": ["endpoints", "services", "pods", "namespaces"],
        "verbs": ["list", "watch"],
    } in rules
    deployment = objs["Deployment"]
    assert deployment["metadata"]["annotations"]["kubeprem.io/dns-server"] == "coredns"
    pod = deployment["spec"]["template"]["spec"]
    coredns, watch = pod["containers"]
    assert coredns["image"] == "kubeprem.local/coredns:1.15.0-bookworm"
    assert "command" not in coredns  # the image's /coredns
    assert coredns["args"] == ["-conf", "/etc/coredns/Corefile"]
    assert {p["containerPort"] for p in coredns["ports"]} == {5353, 9153}
    assert pod["securityContext"]["runAsUser"] == 65534 and pod["dnsPolicy"] == "Default"
    # the peer-watch sidecar probes the peers' TCP 5353 and may delete them
    assert watch["image"] == "kubeprem.local/cluster-dns:2.90-bookworm"
    assert watch["command"][1] == "/opt/cluster-dns/peer_watch.py"
    assert "--port=5353" in watch["command"] and "--selector=k8s-app=kube-dns" in watch["command"]
    assert objs["Role"]["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}
    ]
    assert objs["ConfigMap"]["data"] == {
        "Corefile": dns.corefile(example_site),
        "peer_watch.py": dns.peer_watch_source(),
    }
    assert objs["Service"]["spec"]["clusterIP"] == "10.32.0.10"
    # the pod's digest follows the Corefile: a changed Corefile rolls the pods
    other = dns.manifests(example_site, dns.DnsOptions(upstream=("192.0.2.53",)))
    digest = next(o for o in other if o["kind"] == "Deployment")["spec"]["template"]["metadata"]
    key = "kubeprem.io/config-sha256"
    assert (
        digest["annotations"][key] != deployment["spec"]["template"]["metadata"]["annotations"][key]
    )
    # one replica: no peer, so no sidecar, no deletion right, no python3 image
    single = {o["kind"]: o for o in dns.manifests(example_site, dns.DnsOptions(replicas=1))}
    assert "Role" not in single and "RoleBinding" not in single
    (alone,) = single["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert alone["name"] == "coredns"
    assert set(single["ConfigMap"]["data"]) == {"Corefile"}


def test_dnsmasq_manifest_shape(example_site: Site) -> None:
    objs = {o["kind"]: o for o in dns.manifests(example_site, dns.DnsOptions(server="dnsmasq"))}
    assert objs["Service"]["spec"]["clusterIP"] == "10.32.0.10"
    assert {(p["port"], p["protocol"]) for p in objs["Service"]["spec"]["ports"]} == {
        (53, "UDP"),
        (53, "TCP"),
    }
    rules = objs["ClusterRole"]["rules"]
    assert rules == [
        {
            "apiGroups": [""],
            "resources": ["endpoints", "pods", "services"],
            "verbs": ["list", "watch"],
        }
    ]
    # the controller may delete a peer DNS pod (its own namespace only)
    assert objs["Role"]["metadata"]["namespace"] == "kube-system"
    assert objs["Role"]["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}
    ]
    assert objs["RoleBinding"]["subjects"][0]["name"] == "cluster-dns"
    args = objs["Deployment"]["spec"]["template"]["spec"]["containers"][1]["args"]
    assert "--peer-label=k8s-app=kube-dns" in args and "--peer-failures=4" in args
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    assert objs["Deployment"]["spec"]["replicas"] == 2
    assert pod["dnsPolicy"] == "Default" and pod["securityContext"]["runAsNonRoot"] is True
    assert objs["ConfigMap"]["data"]["cluster_dns.py"] == dns.controller_source()
    assert objs["PodDisruptionBudget"]["apiVersion"] == "policy/v1"
    legacy = {o["kind"]: o for o in dns.manifests(site_with_version("1.20.2"))}
    assert legacy["PodDisruptionBudget"]["apiVersion"] == "policy/v1beta1"


def test_dnsmasq_is_local_for_the_cluster_and_forwards_only_upstream(example_site: Site) -> None:
    args = dns.dnsmasq_args(example_site)
    assert "--local=/cluster.local/" in args and "--no-resolv" in args
    assert not [a for a in args if a.startswith("--server")]
    up = dns.dnsmasq_args(example_site, dns.DnsOptions(upstream=("192.0.2.53",)))
    assert "--server=192.0.2.53" in up
    assert "forward" not in dns.corefile(example_site)


def test_reverse_zones() -> None:
    assert ctl.reverse_zones("10.32.0.0/24") == ["0.32.10.in-addr.arpa"]
    assert ctl.reverse_zones("10.200.0.0/16") == ["200.10.in-addr.arpa"]
    assert ctl.reverse_zones("10.96.0.0/12")[:2] == ["96.10.in-addr.arpa", "97.10.in-addr.arpa"]
    assert len(ctl.reverse_zones("10.96.0.0/12")) == 16
    assert ctl.reverse_zones("192.168.4.0/22") == [f"{i}.168.192.in-addr.arpa" for i in range(4, 8)]


# -- the controller's pure parts ------------------------------------------------------


def svc(ns: str, name: str, ip: str, kind: str = "ClusterIP") -> dict[str, object]:
    spec: dict[str, object] = {"clusterIP": ip, "type": kind}
    if ip != "None":
        spec["clusterIPs"] = [ip]
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def endpoints(ns: str, name: str, *addresses: dict[str, str]) -> dict[str, object]:
    return {
        "metadata": {"namespace": ns, "name": name},
        "subsets": [{"addresses": list(addresses), "notReadyAddresses": [{"ip": "10.200.9.9"}]}],
    }


def pod(ns: str, ip: str, phase: str = "Running", host_network: bool = False) -> dict[str, object]:
    return {
        "metadata": {"namespace": ns, "name": f"p-{ip}"},
        "spec": {"hostNetwork": host_network},
        "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]},
    }


SERVICES = {
    "items": [
        svc("default", "kubernetes", "10.32.0.1"),
        svc("redis", "redis", "10.32.0.40"),
        svc("redis", "redis-headless", "None"),
        svc("web", "docs", "", "ExternalName"),
    ]
}
ENDPOINTS = {
    "items": [
        endpoints("default", "kubernetes", {"ip": "10.241.0.10"}),
        endpoints(
            "redis",
            "redis-headless",
            {"ip": "10.200.1.5", "hostname": "redis-0"},
            {"ip": "10.200.0.4", "hostname": "redis-1"},
            {"ip": "10.200.2.7"},
        ),
        endpoints("redis", "gone", {"ip": "10.200.3.3"}),  # no such Service
    ]
}
PODS = {
    "items": [
        pod("redis", "10.200.1.5"),
        pod("redis", "10.200.7.7", phase="Pending"),
        pod("kube-system", "10.241.0.20", host_network=True),
    ]
}


def test_records_from_api_json() -> None:
    got = ctl.records(SERVICES, ENDPOINTS, PODS, "cluster.local")
    assert got == [
        ("10.200.1.5", "10-200-1-5.redis.pod.cluster.local"),
        ("10.200.2.7", "10-200-2-7.redis-headless.redis.svc.cluster.local"),
        ("10.32.0.1", "kubernetes.default.svc.cluster.local"),
        ("10.200.1.5", "redis-0.redis-headless.redis.svc.cluster.local"),
        ("10.200.0.4", "redis-1.redis-headless.redis.svc.cluster.local"),
        ("10.200.0.4", "redis-headless.redis.svc.cluster.local"),
        ("10.200.1.5", "redis-headless.redis.svc.cluster.local"),
        ("10.200.2.7", "redis-headless.redis.svc.cluster.local"),
        ("10.32.0.40", "redis.redis.svc.cluster.local"),
    ]


def test_records_tolerate_missing_fields() -> None:
    assert ctl.records({}, {"items": None}, {"items": [{}]}, "c.l") == []
    odd = {"items": [{"metadata": {"name": "x"}, "spec": {"clusterIP": "not-an-ip"}}]}
    assert ctl.records(odd, {}, {}, "c.l") == []


def test_hosts_text_golden() -> None:
    text = ctl.hosts_text(ctl.records(SERVICES, ENDPOINTS, PODS, "cluster.local"))
    assert_golden("addons/cluster.hosts", text)


def test_write_if_changed(tmp_path: object) -> None:
    from pathlib import Path

    d = Path(str(tmp_path))
    assert ctl.write_if_changed(str(d), "a\n") is True
    assert ctl.write_if_changed(str(d), "a\n") is False
    assert ctl.write_if_changed(str(d), "b\n") is True
    assert sorted(p.name for p in d.iterdir()) == ["cluster.hosts"]
    assert (d / "cluster.hosts").read_text() == "b\n"


def answer(qid: int, name: str, rcode: int, *ips: str) -> bytes:
    q = ctl.query_packet(name, qid)[12:]
    head = struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, len(ips), 0, 0)
    rrs = b"".join(
        b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + bytes(int(x) for x in ip.split("."))
        for ip in ips
    )
    return head + q + rrs


def test_dns_packets() -> None:
    q = ctl.query_packet("kubernetes.default.svc.cluster.local", 7)
    assert q[:12] == struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0)
    assert q[12:] == b"\x0akubernetes\x07default\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01"
    got = ctl.parse_answer(answer(7, "a.b", 0, "10.32.0.1", "10.32.0.2"), 7)
    assert got == (0, ["10.32.0.1", "10.32.0.2"])
    assert ctl.parse_answer(answer(9, "nope.b", 3), 9) == (3, [])
    with pytest.raises(ValueError, match="not the answer"):
        ctl.parse_answer(answer(9, "a.b", 0), 8)


# -- the check ----------------------------------------------------------------------

NSLOOKUP = """Server:\t\t10.32.0.10
Address:\t10.32.0.10:53

Name:\tkubernetes.default.svc.cluster.local
Address: 10.32.0.1

"""


def test_lookup_result() -> None:
    assert dns.lookup_result(NSLOOKUP, "10.32.0.1") == (
        "Name: kubernetes.default.svc.cluster.local Address: 10.32.0.1"
    )
    assert dns.lookup_result(NSLOOKUP, "10.32.0.2") is None
    assert dns.lookup_result("** server can't find x: NXDOMAIN", "10.32.0.1") is None


def fake_cluster(logs: str, smoke_pods: str = '{"items": []}') -> FakeTransport:
    fake = FakeTransport("controller-0")

    def answer(
        f: FakeTransport, argv: tuple[str, ...], stdin: bytes | None
    ) -> tuple[int, str, str]:
        verb = argv[3]
        if verb == "get" and argv[4] == "pods":
            return 0, smoke_pods, ""
        if verb == "exec":
            return 0, logs, ""
        if verb == "get":
            return 0, "Succeeded", ""
        if verb == "logs":
            return 0, logs, ""
        return 0, "", ""

    fake.handle(("/usr/local/bin/kubectl",), answer)
    return fake


def test_dns_check_creates_and_removes_its_pod(example_site: Site) -> None:
    fake = fake_cluster(NSLOOKUP)
    evidence = asyncio.run(dns.dns_check(fake, example_site))
    assert "to 10.32.0.1 via 10.32.0.10" in evidence
    verbs = [c[3] for c in fake.commands()]
    assert verbs == ["get", "delete", "create", "get", "logs", "delete"]


READY_SMOKE_POD = """{"items": [{"metadata": {"name": "smoke-a"}, "spec": {"nodeName": "worker-0"},
  "status": {"podIP": "10.200.0.5", "conditions": [{"type": "Ready", "status": "True"}]}}]}"""


def test_dns_check_uses_a_running_pod_when_there_is_one(example_site: Site) -> None:
    fake = fake_cluster(NSLOOKUP, READY_SMOKE_POD)
    evidence = asyncio.run(dns.dns_check(fake, example_site))
    assert "a running pod resolved kubernetes.default.svc.cluster.local to 10.32.0.1" in evidence
    assert [c[3] for c in fake.commands()] == ["get", "exec"]  # no pod created


def test_dns_check_falls_back_to_a_fresh_pod_when_the_quick_lookup_fails(
    example_site: Site,
) -> None:
    fake = fake_cluster("** server can't find x: NXDOMAIN\n", READY_SMOKE_POD)
    with pytest.raises(OperationError, match="NXDOMAIN"):
        asyncio.run(dns.dns_check(fake, example_site))
    assert "create" in [c[3] for c in fake.commands()]


def test_dns_check_fails_with_the_answer(example_site: Site) -> None:
    fake = fake_cluster("** server can't find kubernetes.default.svc.cluster.local: NXDOMAIN\n")
    with pytest.raises(OperationError, match="NXDOMAIN") as err:
        asyncio.run(dns.dns_check(fake, example_site))
    assert "did not resolve kubernetes.default.svc.cluster.local to 10.32.0.1" in str(err.value)
    assert [c[3] for c in fake.commands()][-1] == "delete"


def test_apply_imports_the_dns_servers_image_with_the_base_images() -> None:
    from kubeprem.workflows.apply import base_images

    assert base_images(with_images()) == ("pause", "busybox", "coredns", "cluster-dns")
    assert base_images(with_images(version="1.20.2")) == ("pause", "busybox", "cluster-dns")
    # the site's own CoreDNS archive is imported as one of its images
    assert base_images(with_images(COREDNS)) == ("pause", "busybox", "cluster-dns")

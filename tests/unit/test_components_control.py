"""Control-plane renderers: golden files for every controller and focused checks.

Goldens: tests/golden/control/<minor>/<machine>/<path on the machine> for the
example site at 1.20 (legacy) and 1.37 (the lab), plus the cluster RBAC. Regenerate
with KUBEPREM_REGEN_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from ruamel.yaml import YAML

from kubeprem.components import (
    apiserver,
    audit,
    controller_manager,
    etcd,
    haproxy,
    keepalived,
    paths,
    rbac,
    scheduler,
)
from kubeprem.components.base import HostContext, Rendered
from kubeprem.site import Site, example_text, parse_site
from kubeprem.site.model import Audit, Encryption

try:
    from tests.conftest import assert_golden, site_with_version
except ImportError:  # tests/ is not a package
    from conftest import assert_golden, site_with_version  # type: ignore[no-redef]

RENDERERS: dict[str, Callable[[HostContext], Rendered]] = {
    "etcd": etcd.render,
    "kube-apiserver": apiserver.render,
    "kube-controller-manager": controller_manager.render,
    "kube-scheduler": scheduler.render,
    "haproxy": haproxy.render,
    "keepalived": keepalived.render,
}
VERSIONS = {"1.20": "1.20.2", "1.37": "1.37.2"}
CONTROLLERS = ("controller-0", "controller-1", "controller-2")


def ctx(site: Site, name: str = "controller-0") -> HostContext:
    return HostContext(site, site.machine(name))


def text(rendered: Rendered, path: str) -> str:
    for f in rendered.files:
        if f.path == path:
            return f.content.decode()
    raise AssertionError(f"{rendered.component} renders no {path}")


def exec_flags(unit_text: str) -> dict[str, str]:
    """``--key=value`` flags of the unit's ExecStart, continuation lines joined."""
    line = next(
        x for x in unit_text.replace(" \\\n  ", " ").splitlines() if x.startswith("ExecStart=")
    )
    out = {}
    for arg in line.split()[1:]:
        key, _, value = arg.removeprefix("--").partition("=")
        out[key] = value
    return out


def unit_flags(rendered: Rendered) -> dict[str, str]:
    return exec_flags(text(rendered, f"{paths.UNIT_DIR}/{rendered.services[0]}"))


def yaml_load(s: str) -> Any:
    return YAML(typ="safe", pure=True).load(StringIO(s))


# -- golden files ---------------------------------------------------------------


@pytest.mark.parametrize("minor", sorted(VERSIONS))
@pytest.mark.parametrize("machine", CONTROLLERS)
@pytest.mark.parametrize("component", sorted(RENDERERS))
def test_golden(minor: str, machine: str, component: str) -> None:
    site = site_with_version(VERSIONS[minor])
    rendered = RENDERERS[component](ctx(site, machine))
    assert rendered.component == component
    for f in rendered.files:
        assert_golden(f"control/{minor}/{machine}{f.path}", f.content.decode())


def test_golden_rbac(example_site: Site) -> None:
    assert_golden("control/rbac.yaml", rbac.manifests_text(example_site))


def test_renderers_ask_the_version_table_only() -> None:
    for module in (etcd, apiserver, controller_manager, scheduler, haproxy, keepalived, audit):
        source = inspect.getsource(module)
        assert not re.search(r"\.minor\b|kubernetes_version|cluster\.version", source), module


# -- etcd --------------------------------------------------------------------------


def test_etcd_initial_cluster_has_every_member(example_site: Site) -> None:
    f = unit_flags(etcd.render(ctx(example_site, "controller-1")))
    members = dict(p.split("=", 1) for p in f["initial-cluster"].split(","))
    assert members == {m.name: f"https://{m.address}:2380" for m in example_site.etcd_members}
    assert f["name"] == "controller-1"
    assert f["listen-client-urls"] == "https://10.240.0.11:2379,https://127.0.0.1:2379"
    assert f["listen-peer-urls"] == "https://10.240.0.11:2380"


def test_etcd_mutual_tls_for_clients_and_peers(example_site: Site) -> None:
    f = unit_flags(etcd.render(ctx(example_site)))
    assert f["client-cert-auth"] == "true"
    assert f["peer-client-cert-auth"] == "true"
    assert f["trusted-ca-file"] == f["peer-trusted-ca-file"] == paths.ETCD_CA_CRT
    assert (f["cert-file"], f["key-file"]) == (paths.ETCD_SERVER_CRT, paths.ETCD_SERVER_KEY)
    assert (f["peer-cert-file"], f["peer-key-file"]) == (paths.ETCD_PEER_CRT, paths.ETCD_PEER_KEY)
    assert f["data-dir"] == paths.ETCD_DATA
    assert all(u.startswith("https://") for u in f["advertise-client-urls"].split(","))


# -- kube-apiserver ------------------------------------------------------------------


def test_apiserver_security_flags(example_site: Site) -> None:
    f = unit_flags(apiserver.render(ctx(example_site)))
    assert f["anonymous-auth"] == "false"
    assert f["authorization-mode"] == "Node,RBAC"
    assert "NodeRestriction" in f["enable-admission-plugins"].split(",")
    assert f["profiling"] == "false"
    assert f["kubelet-certificate-authority"] == paths.CA_CRT
    assert f["kubelet-preferred-address-types"].startswith("InternalIP,")
    assert f["encryption-provider-config"] == paths.ENCRYPTION_CONFIG
    assert f["service-account-signing-key-file"] == paths.SA_KEY
    assert f["service-account-key-file"] == paths.SA_PUB
    assert f["bind-address"] == "0.0.0.0"
    assert f["secure-port"] == str(example_site.api.apiserver_port)
    assert f["advertise-address"] == "10.240.0.10"


def test_apiserver_talks_to_every_etcd_member(example_site: Site) -> None:
    f = unit_flags(apiserver.render(ctx(example_site)))
    assert f["etcd-servers"].split(",") == [
        f"https://{m.address}:2379" for m in example_site.etcd_members
    ]
    assert f["etcd-certfile"] == paths.APISERVER_ETCD_CLIENT_CRT


def test_apiserver_audit_on_and_off(example_site: Site) -> None:
    on = apiserver.render(ctx(example_site))
    f = unit_flags(on)
    assert f["audit-policy-file"] == paths.AUDIT_POLICY
    assert f["audit-log-path"] == paths.AUDIT_LOG
    assert (f["audit-log-maxage"], f["audit-log-maxbackup"], f["audit-log-maxsize"]) == (
        "30",
        "10",
        "100",
    )
    policy = next(x for x in on.files if x.path == paths.AUDIT_POLICY)
    assert policy.mode == 0o600

    quiet = example_site.model_copy(
        update={"audit": Audit(enabled=False), "encryption": Encryption(at_rest=False)}
    )
    off = apiserver.render(ctx(quiet))
    f = unit_flags(off)
    assert not any(k.startswith("audit-") for k in f)
    assert "encryption-provider-config" not in f
    assert paths.AUDIT_POLICY not in {x.path for x in off.files}


def test_apiserver_insecure_port_flag_by_version() -> None:
    old = unit_flags(apiserver.render(ctx(site_with_version("1.20.2"))))
    new = unit_flags(apiserver.render(ctx(site_with_version("1.35.0"))))
    assert old["insecure-port"] == "0"
    assert "insecure-port" not in new


def test_audit_policy_never_logs_secret_bodies() -> None:
    rules = yaml_load(audit.policy_text())["rules"]

    def first_rule_for(group: str, resource: str, verb: str) -> dict[str, Any]:
        for rule in rules:
            if "nonResourceURLs" in rule or "users" in rule or "userGroups" in rule:
                continue
            if "verbs" in rule and verb not in rule["verbs"]:
                continue
            if "resources" in rule and not any(
                r["group"] == group and resource in r["resources"] for r in rule["resources"]
            ):
                continue
            return dict(rule)
        raise AssertionError("no rule matches")

    for group, resource in [
        ("", "secrets"),
        ("", "configmaps"),
        ("", "serviceaccounts/token"),
        ("authentication.k8s.io", "tokenreviews"),
    ]:
        for verb in ("get", "create", "update", "patch", "delete"):
            assert first_rule_for(group, resource, verb)["level"] in ("None", "Metadata")
    assert first_rule_for("apps", "deployments", "create")["level"] == "Request"
    health = rules[0]
    assert health["level"] == "None"
    assert {"/healthz*", "/readyz*", "/livez*"} <= set(health["nonResourceURLs"])


# -- kube-controller-manager and kube-scheduler ---------------------------------------


def test_controller_manager_flags(example_site: Site) -> None:
    f = unit_flags(controller_manager.render(ctx(example_site)))
    assert "node-cidr-mask-size" not in f
    assert f["cluster-cidr"] == "10.200.0.0/16"
    assert f["service-cluster-ip-range"] == "10.32.0.0/24"
    assert f["allocate-node-cidrs"] == "false"  # apply sets the site's pod CIDRs
    assert f["use-service-account-credentials"] == "true"
    assert f["leader-elect"] == "true"
    # HTTPS on the machine's address, with a cluster-CA certificate naming it
    assert f["bind-address"] == "10.240.0.10"
    assert (f["tls-cert-file"], f["tls-private-key-file"]) == (
        paths.CONTROLLER_MANAGER_SERVING_CRT,
        paths.CONTROLLER_MANAGER_SERVING_KEY,
    )
    assert f["profiling"] == "false"
    assert f["kubeconfig"] == paths.CONTROLLER_MANAGER_CONF
    assert (f["cluster-signing-cert-file"], f["cluster-signing-key-file"]) == (
        paths.CA_CRT,
        paths.CA_KEY,
    )


def test_controller_manager_insecure_port_only_in_1_20() -> None:
    assert unit_flags(controller_manager.render(ctx(site_with_version("1.20.2"))))["port"] == "0"
    assert "port" not in unit_flags(controller_manager.render(ctx(site_with_version("1.35.0"))))


@pytest.mark.parametrize(
    ("version", "api", "insecure"),
    [
        ("1.20.2", "kubescheduler.config.k8s.io/v1beta1", "127.0.0.1:10251"),
        ("1.35.0", "kubescheduler.config.k8s.io/v1", None),
        ("1.37.2", "kubescheduler.config.k8s.io/v1", None),
    ],
)
def test_scheduler_config_by_version(version: str, api: str, insecure: str | None) -> None:
    rendered = scheduler.render(ctx(site_with_version(version)))
    cfg = yaml_load(text(rendered, paths.SCHEDULER_CONFIG))
    assert cfg["apiVersion"] == api
    assert cfg["kind"] == "KubeSchedulerConfiguration"
    assert cfg["clientConnection"]["kubeconfig"] == paths.SCHEDULER_CONF
    assert cfg["leaderElection"]["leaderElect"] is True
    assert cfg["enableProfiling"] is False
    assert cfg.get("healthzBindAddress") == insecure
    assert cfg.get("metricsBindAddress") == insecure
    f = unit_flags(rendered)
    assert f["config"] == paths.SCHEDULER_CONFIG
    assert f["bind-address"] == str(site_with_version(version).machine("controller-0").address)
    assert (f["tls-cert-file"], f["tls-private-key-file"]) == (
        paths.SCHEDULER_SERVING_CRT,
        paths.SCHEDULER_SERVING_KEY,
    )
    assert "port" not in f  # ignored with --config in 1.20, gone later


# -- HAProxy and keepalived --------------------------------------------------------------


def test_haproxy_backends_are_every_apiserver(example_site: Site) -> None:
    cfg = text(haproxy.render(ctx(example_site)), paths.HAPROXY_CFG)
    servers = re.findall(r"^\s+server (\S+) (\S+)$", cfg, re.M)
    assert servers == [
        ("controller-0", "10.240.0.10:6443"),
        ("controller-1", "10.240.0.11:6443"),
        ("controller-2", "10.240.0.12:6443"),
    ]
    assert "http-check send meth GET uri /readyz" in cfg
    default_server = next(x for x in cfg.splitlines() if x.strip().startswith("default-server"))
    for word in ("check-ssl", "verify required", f"ca-file {paths.CA_CRT}"):
        assert word in default_server
    assert f"crt {paths.HAPROXY_HEALTHCHECK_PEM}" in default_server


def test_haproxy_binds_vip_port_loopback_and_its_exporter(example_site: Site) -> None:
    for m in example_site.load_balancers:
        cfg = text(haproxy.render(ctx(example_site, m.name)), paths.HAPROXY_CFG)
        binds = re.findall(r"^\s+bind (\S+)$", cfg, re.M)
        assert binds == ["127.0.0.1:8404", f"{m.address}:8405", ":8443"]
        exporter = cfg.split("frontend prometheus\n", 1)[1].split("\n\n", 1)[0]
        assert "http-request use-service prometheus-exporter if { path /metrics }" in exporter
        assert "mode http" in exporter


def test_keepalived_vip_priority_and_unicast_peers(example_site: Site) -> None:
    for m in example_site.load_balancers:
        cfg = text(keepalived.render(ctx(example_site, m.name)), paths.KEEPALIVED_CONF)
        assert "10.240.0.100/24 dev eth0" in cfg
        assert f"priority {example_site.vrrp_priority(m)}\n" in cfg
        assert f"unicast_src_ip {m.address}\n" in cfg
        peers = re.search(r"unicast_peer \{\n(.*?)\n\s+\}", cfg, re.S)
        assert peers is not None
        expected = [str(p.address) for p in example_site.load_balancers if p.name != m.name]
        assert peers.group(1).split() == expected
        assert "virtual_router_id 51\n" in cfg
        assert "state BACKUP" in cfg and "nopreempt" in cfg
        assert "track_script {\n        haproxy\n" in cfg


def test_keepalived_machine_interface_overrides_site() -> None:
    text_ = example_text().replace(
        "    address: 10.240.0.11\n", "    address: 10.240.0.11\n    interface: bond0\n"
    )
    site, _ = parse_site(text_, "example.yaml")
    one = text(keepalived.render(ctx(site, "controller-1")), paths.KEEPALIVED_CONF)
    zero = text(keepalived.render(ctx(site, "controller-0")), paths.KEEPALIVED_CONF)
    assert "interface bond0" in one and "dev bond0" in one
    assert "interface eth0" in zero


def test_keepalived_advert_interval_is_tunable(example_site: Site) -> None:
    m = example_site.machine("controller-0")
    cfg = keepalived.config(example_site, m, keepalived.Tuning(advert_int=0.3))
    assert "advert_int 0.3\n" in cfg
    assert "vrrp_version 3" in cfg  # sub-second adverts need VRRPv3


def test_keepalived_check_script_is_executable(example_site: Site) -> None:
    rendered = keepalived.render(ctx(example_site))
    script = next(f for f in rendered.files if f.path == keepalived.CHECK_SCRIPT)
    assert script.mode == 0o755
    assert script.content.startswith(b"#!/bin/bash\n")
    assert b"127.0.0.1/8404" in script.content


# -- RBAC --------------------------------------------------------------------------------


def test_rbac_lets_the_apiserver_reach_kubelets(example_site: Site) -> None:
    role, binding = rbac.manifests(example_site)
    assert role["kind"] == "ClusterRole" and binding["kind"] == "ClusterRoleBinding"
    resources = set(role["rules"][0]["resources"])
    assert resources == {"nodes/proxy", "nodes/stats", "nodes/log", "nodes/spec", "nodes/metrics"}
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "User",
            "name": "kube-apiserver-kubelet-client",
        }
    ]
    docs = list(YAML(typ="safe", pure=True).load_all(rbac.manifests_text(example_site)))
    assert docs == [role, binding]


def test_services_are_the_units_rendered(example_site: Site) -> None:
    for render in RENDERERS.values():
        rendered = render(ctx(example_site))
        paths_ = {f.path for f in rendered.files}
        for service in rendered.services:
            assert f"{paths.UNIT_DIR}/{service}" in paths_


@pytest.mark.parametrize(
    ("version", "flag"),
    [
        ("1.20.2", "--experimental-initial-corrupt-check=true"),  # etcd 3.4
        ("1.37.2", "--feature-gates=InitialCorruptCheck=true"),  # etcd 3.6
    ],
)
def test_etcd_corrupt_check_as_its_release_spells_it(version: str, flag: str) -> None:
    site = site_with_version(version)
    args = etcd.argv(ctx(site))
    assert flag in args
    assert not [a for a in args if a.startswith("--experimental") and flag.startswith("--feature")]

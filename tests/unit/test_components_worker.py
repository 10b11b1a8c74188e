"""Worker component renderers: golden files for worker-0 and focused checks.

Goldens: tests/golden/worker/<case>/<path on the machine>, for 1.20 (legacy)
and 1.37, each on a real server and in a container (the lab's machines).
Regenerate with KUBEPREM_REGEN_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from ruamel.yaml import YAML

from kubeprem.components import cni, containerd, kube_proxy, kubelet, node_os, routes
from kubeprem.components.base import HostContext, Rendered, RenderOptions
from kubeprem.components.versions import features
from kubeprem.site import Site

try:
    from tests.conftest import assert_golden, site_with_version
except ImportError:  # tests/ is not a package
    from conftest import assert_golden, site_with_version  # type: ignore[no-redef]

RENDERERS: dict[str, Callable[[HostContext], Rendered]] = {
    "containerd": containerd.render,
    "cni": cni.render,
    "routes": routes.render,
    "kubelet": kubelet.render,
    "kube-proxy": kube_proxy.render,
    "node-os": node_os.render,
}
WORKER_ONLY = ("containerd", "cni", "kubelet", "kube-proxy", "node-os")

# case -> (version, in a container, on cgroup v1): the lab's machines are
# containers on this project's cgroup v1 build machines
CASES = {
    "1.20-server": ("1.20.2", False, False),
    "1.20-container": ("1.20.2", True, True),
    "1.37-server": ("1.37.2", False, False),
    "1.37-container": ("1.37.2", True, True),
}


def ctx(
    site: Site, name: str = "worker-0", *, in_container: bool = False, cgroup_v1: bool = False
) -> HostContext:
    options = RenderOptions(in_container=in_container, cgroup_v1=cgroup_v1)
    return HostContext(site, site.machine(name), options)


def text(rendered: Rendered, path: str) -> str:
    for f in rendered.files:
        if f.path == path:
            return f.content.decode()
    raise AssertionError(f"{rendered.component} renders no {path}")


def unit_lines(unit_text: str) -> list[str]:
    """The unit's lines with backslash continuations joined."""
    return unit_text.replace(" \\\n  ", " ").splitlines()


def cri_runtime(toml: dict[str, Any]) -> dict[str, Any]:
    """The CRI runtime table of a containerd config: the CRI plugin itself in
    config version 2, its runtime plugin in version 3 (containerd 2)."""
    plugins = toml["plugins"]
    if toml["version"] == 2:
        return dict(plugins["io.containerd.grpc.v1.cri"])
    return dict(plugins["io.containerd.cri.v1.runtime"])


def yaml_load(s: str) -> dict[str, object]:
    data = YAML(typ="safe").load(StringIO(s))
    assert isinstance(data, dict)
    return data


# -- golden files ------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("component", sorted(RENDERERS))
def test_golden(case: str, component: str) -> None:
    version, in_container, cgroup_v1 = CASES[case]
    site = site_with_version(version)
    rendered = RENDERERS[component](ctx(site, in_container=in_container, cgroup_v1=cgroup_v1))
    assert rendered.files, f"{component} renders nothing for worker-0"
    for f in rendered.files:
        assert not f.secret and f.mode == 0o644
        assert_golden(f"worker/{case}{f.path}", f.content.decode())


# -- lab-only settings -----------------------------------------------------


@pytest.mark.parametrize("version", ["1.20.2", "1.35.0", "1.37.2"])
def test_lab_only_settings_only_in_container(version: str) -> None:
    site = site_with_version(version)
    for in_container in (False, True):
        c = ctx(site, in_container=in_container)
        toml = tomllib.loads(text(containerd.render(c), containerd.CONTAINERD_CONFIG))
        cri = cri_runtime(toml)
        proxy = yaml_load(text(kube_proxy.render(c), kube_proxy.KUBE_PROXY_CONFIG))
        if in_container:
            assert cri["restrict_oom_score_adj"] is True
            assert proxy["conntrack"] == {
                "maxPerCore": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            }
        else:
            assert "restrict_oom_score_adj" not in cri
            assert "conntrack" not in proxy
            assert "restrict_oom_score_adj" not in text(
                containerd.render(c), containerd.CONTAINERD_CONFIG
            )


def test_container_changes_only_what_it_must(example_site: Site) -> None:
    server = yaml_load(text(kubelet.render(ctx(example_site)), kubelet.KUBELET_CONFIG))
    lab = yaml_load(
        text(kubelet.render(ctx(example_site, in_container=True)), kubelet.KUBELET_CONFIG)
    )
    changed = {k for k in server.keys() | lab.keys() if server.get(k) != lab.get(k)}
    assert changed == {"cgroupDriver", "failSwapOn", "protectKernelDefaults"}
    assert server["protectKernelDefaults"] is True and server["failSwapOn"] is True
    assert lab["protectKernelDefaults"] is False and lab["failSwapOn"] is False


# -- CNI ---------------------------------------------------------------------


def test_each_worker_cni_subnet_is_its_own_pod_cidr(example_site: Site) -> None:
    subnets = {}
    for w in example_site.workers:
        conf = json.loads(text(cni.render(ctx(example_site, w.name)), cni.BRIDGE_CONFLIST))
        bridge = conf["plugins"][0]
        assert bridge["type"] == "bridge" and bridge["bridge"] == "cnio0"
        assert bridge["isGateway"] and bridge["ipMasq"]
        assert bridge["ipam"]["type"] == "host-local"
        assert bridge["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}]
        [[rng]] = bridge["ipam"]["ranges"]
        assert rng["subnet"] == str(example_site.pod_cidrs[w.name])
        assert conf["plugins"][1]["type"] == "portmap"
        subnets[w.name] = rng["subnet"]
    assert len(set(subnets.values())) == len(example_site.workers)
    assert subnets["worker-0"] == "10.200.0.0/24"


@pytest.mark.parametrize("version", ["1.20.2", "1.37.2"])
def test_cni_version_is_one_the_rows_containerd_and_plugins_speak(version: str) -> None:
    c = ctx(site_with_version(version))
    for f in cni.render(c).files:
        assert json.loads(f.content)["cniVersion"] in {"0.3.1", "0.4.0", "1.0.0"}


# -- routes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["controller-0", "controller-1", "controller-2", "worker-0", "worker-1", "worker-2"]
)
def test_routes_cover_every_other_worker_and_never_self(example_site: Site, name: str) -> None:
    rendered = routes.render(ctx(example_site, name))
    lines = text(rendered, routes.BATCH).splitlines()
    assert lines[0] == "route flush proto 200"
    found = set()
    for line in lines[1:]:
        words = line.split()
        assert words[:2] == ["route", "replace"] and words[3] == "via"
        assert words[-2:] == ["proto", "200"]
        found.add((words[2], words[4]))
    expected = {
        (str(example_site.pod_cidrs[w.name]), str(w.address))
        for w in example_site.workers
        if w.name != name
    }
    assert found == expected and len(lines) == 1 + len(expected)
    machine = example_site.machine(name)
    assert all(via != str(machine.address) for _, via in found)
    if machine.has("worker"):
        assert str(example_site.pod_cidrs[name]) not in text(rendered, routes.BATCH)
    unit = unit_lines(text(rendered, "/etc/systemd/system/kubeprem-pod-routes.service"))
    assert "Type=oneshot" in unit and "RemainAfterExit=yes" in unit
    assert f"ExecStart=/sbin/ip -batch {routes.BATCH}" in unit
    assert "ExecStop=/sbin/ip route flush proto 200" in unit
    assert rendered.services == ("kubeprem-pod-routes.service",)


def test_routes_with_no_other_worker_still_render_a_valid_unit() -> None:
    site = site_with_version("1.20.2")
    alone = site.model_copy(
        update={"machines": [m for m in site.machines if m.name not in ("worker-1", "worker-2")]}
    )
    rendered = routes.render(ctx(alone))
    assert text(rendered, routes.BATCH) == "route flush proto 200\n"
    unit = unit_lines(text(rendered, "/etc/systemd/system/kubeprem-pod-routes.service"))
    assert f"ExecStart=/sbin/ip -batch {routes.BATCH}" in unit


# -- cgroup drivers and runtime endpoint ------------------------------------


@pytest.mark.parametrize("version", ["1.20.2", "1.35.0", "1.37.2"])
@pytest.mark.parametrize("in_container", [False, True])
def test_cgroup_drivers_agree(version: str, in_container: bool) -> None:
    c = ctx(site_with_version(version), in_container=in_container)
    toml = tomllib.loads(text(containerd.render(c), containerd.CONTAINERD_CONFIG))
    cri = cri_runtime(toml)
    systemd_cgroup = cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"]
    config = yaml_load(text(kubelet.render(c), kubelet.KUBELET_CONFIG))
    assert config["cgroupDriver"] == ("systemd" if systemd_cgroup else "cgroupfs")
    assert config["cgroupDriver"] == ("cgroupfs" if in_container else "systemd")


def test_kubelet_runtime_flags_by_version() -> None:
    old = kubelet.argv(ctx(site_with_version("1.20.2")))
    assert "--container-runtime=remote" in old
    assert "--network-plugin=cni" in old
    assert "--container-runtime-endpoint=unix:///run/containerd/containerd.sock" in old
    old_config = yaml_load(
        text(kubelet.render(ctx(site_with_version("1.20.2"))), kubelet.KUBELET_CONFIG)
    )
    assert "containerRuntimeEndpoint" not in old_config
    for version in ("1.35.0", "1.37.2"):
        c = ctx(site_with_version(version))
        new = kubelet.argv(c)
        assert not any(a.startswith(("--container-runtime", "--network-plugin")) for a in new)
        config = yaml_load(text(kubelet.render(c), kubelet.KUBELET_CONFIG))
        assert config["containerRuntimeEndpoint"] == "unix:///run/containerd/containerd.sock"


def test_kubelet_identity_and_security(example_site: Site) -> None:
    c = ctx(example_site, "worker-1")
    args = kubelet.argv(c)
    assert "--hostname-override=worker-1" in args
    assert "--node-ip=10.240.0.21" in args
    assert "--kubeconfig=/etc/kubernetes/kubelet.conf" in args
    assert "--config=/var/lib/kubelet/config.yaml" in args
    config = yaml_load(text(kubelet.render(c), kubelet.KUBELET_CONFIG))
    assert config["authentication"] == {
        "anonymous": {"enabled": False},
        "webhook": {"enabled": True},
        "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"},
    }
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["readOnlyPort"] == 0
    assert config["rotateCertificates"] is False
    assert config["clusterDNS"] == ["10.32.0.10"]
    assert config["clusterDomain"] == "cluster.local"
    assert config["tlsCertFile"] == "/var/lib/kubelet/pki/kubelet.crt"


def test_kube_proxy_config(example_site: Site) -> None:
    config = yaml_load(
        text(kube_proxy.render(ctx(example_site, "worker-2")), kube_proxy.KUBE_PROXY_CONFIG)
    )
    assert config["mode"] == "iptables"
    assert config["clusterCIDR"] == "10.200.0.0/16"
    assert config["hostnameOverride"] == "worker-2"
    # metrics on the node's address for Prometheus (the firewall opens 10249)
    assert config["metricsBindAddress"] == f"{example_site.machine('worker-2').address}:10249"
    assert config["clientConnection"] == {"kubeconfig": "/etc/kubernetes/kube-proxy.conf"}


# -- node OS -----------------------------------------------------------------


def _sysctls(rendered: Rendered) -> dict[str, str]:
    body = text(rendered, node_os.SYSCTL_FILE)
    pairs = [line.split(" = ") for line in body.splitlines() if line and line[0] != "#"]
    return {k: v for k, v in pairs}


def test_protect_kernel_defaults_has_its_sysctls(example_site: Site) -> None:
    c = ctx(example_site)
    assert kubelet.protect_kernel_defaults(c)
    values = _sysctls(node_os.render(c))
    # what the kubelet 1.20 checks (pkg/kubelet/cm/container_manager_linux.go)
    assert values == {
        "net.ipv4.ip_forward": "1",
        "net.bridge.bridge-nf-call-iptables": "1",
        "net.bridge.bridge-nf-call-ip6tables": "1",
        "vm.overcommit_memory": "1",
        "vm.panic_on_oom": "0",
        "kernel.panic": "10",
        "kernel.panic_on_oops": "1",
        "kernel.keys.root_maxkeys": "1000000",
        "kernel.keys.root_maxbytes": "25000000",
    }
    modules = text(node_os.render(c), node_os.MODULES_FILE).split()
    assert {"overlay", "br_netfilter"} <= set(modules)


def test_container_gets_no_global_kernel_settings(example_site: Site) -> None:
    c = ctx(example_site, in_container=True)
    rendered = node_os.render(c)
    assert not kubelet.protect_kernel_defaults(c)
    assert set(_sysctls(rendered)) == set(node_os.NETWORK_SYSCTLS)
    assert node_os.MODULES_FILE not in {f.path for f in rendered.files}
    unit_text = text(containerd.render(c), "/etc/systemd/system/containerd.service")
    assert "modprobe" not in unit_text


# -- roles and units ---------------------------------------------------------


@pytest.mark.parametrize("component", WORKER_ONLY)
def test_worker_components_render_nothing_on_controllers(
    example_site: Site, component: str
) -> None:
    rendered = RENDERERS[component](ctx(example_site, "controller-0"))
    assert rendered.files == () and rendered.services == ()


def test_units_run_installed_binaries_and_containerd_delegates(example_site: Site) -> None:
    c = ctx(example_site)
    unit_text = text(containerd.render(c), "/etc/systemd/system/containerd.service")
    for setting in ("Delegate=yes", "KillMode=process", "Type=notify"):
        assert setting in unit_text.splitlines()
    assert "ExecStart=/usr/local/bin/containerd" in unit_text
    kubelet_unit = text(kubelet.render(c), "/etc/systemd/system/kubelet.service")
    assert "ExecStart=/usr/local/bin/kubelet" in kubelet_unit
    assert "Requires=containerd.service" in kubelet_unit
    proxy_unit = text(kube_proxy.render(c), "/etc/systemd/system/kube-proxy.service")
    assert "ExecStart=/usr/local/bin/kube-proxy" in proxy_unit
    toml = tomllib.loads(text(containerd.render(c), containerd.CONTAINERD_CONFIG))
    runtime = toml["plugins"]["io.containerd.cri.v1.runtime"]
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["options"]["BinaryName"] == "/usr/local/bin/runc"
    sandbox = toml["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"]
    assert sandbox == "registry.k8s.io/pause:3.10.2"
    old = tomllib.loads(
        text(containerd.render(ctx(site_with_version("1.20.2"))), containerd.CONTAINERD_CONFIG)
    )
    assert old["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] == "k8s.gcr.io/pause:3.2"


@pytest.mark.parametrize(
    ("version", "cgroup_v1", "expected"),
    [
        ("1.37.2", True, False),  # v1 host: the kubelet is told to run anyway
        ("1.37.2", False, None),  # v2 host: the default (refuse v1) stays
        ("1.35.0", True, False),  # the first release that refuses v1
        ("1.20.2", True, None),  # before 1.35 the kubelet accepts v1 by default
    ],
)
def test_fail_cgroup_v1_only_on_v1_hosts_of_releases_that_refuse_it(
    version: str, cgroup_v1: bool, expected: bool | None
) -> None:
    site = site_with_version(version)
    config = yaml_load(text(kubelet.render(ctx(site, cgroup_v1=cgroup_v1)), kubelet.KUBELET_CONFIG))
    assert config.get("failCgroupV1") is expected


def test_containerd_2_config_splits_images_and_runtime() -> None:
    import tomllib

    for in_container in (False, True):
        c = ctx(site_with_version("1.37.2"), in_container=in_container)
        cfg = tomllib.loads(text(containerd.render(c), containerd.CONTAINERD_CONFIG))
        assert cfg["version"] == 3
        plugins = cfg["plugins"]
        assert "io.containerd.grpc.v1.cri" not in plugins  # the version-2 section
        images, runtime = (
            plugins["io.containerd.cri.v1.images"],
            plugins["io.containerd.cri.v1.runtime"],
        )
        assert images["pinned_images"]["sandbox"] == features(c.site).pause_image
        runc = runtime["containerd"]["runtimes"]["runc"]
        assert runc["options"]["SystemdCgroup"] is (not in_container)
        assert runtime["cni"]["bin_dirs"] == ["/opt/cni/bin"]
        assert runtime.get("restrict_oom_score_adj", False) is in_container

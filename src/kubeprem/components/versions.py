"""Every difference between the Kubernetes versions kubeprem supports, in one table.

Renderers ask ``features(site)`` instead of comparing version numbers, so
a new version is one new row here, not conditionals scattered through the
components. Sources: each version's flag reference and the config API
changelogs (KubeletConfiguration, KubeSchedulerConfiguration,
KubeProxyConfiguration).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the site package imports this table for its checks
    from kubeprem.site.model import Site


@dataclass(frozen=True)
class Features:
    """What differs between supported minor versions."""

    minor: tuple[int, int]
    # kube-scheduler --config file API version
    scheduler_config_api: str
    # kubelet: 1.20 needs --container-runtime=remote/--network-plugin=cni
    # (dockershim era); from 1.24 those flags are gone and the endpoint
    # moves into KubeletConfiguration (1.27+).
    kubelet_dockershim_flags: bool
    kubelet_endpoint_in_config: bool
    # the API server's --service-account-issuer/--service-account-signing-key-file
    # are required from 1.20 on; listed for completeness of the table
    apiserver_insecure_port_flag: bool
    # etcd version shipped with / tested against this Kubernetes version
    etcd_version: str
    containerd_config_version: int
    pause_image: str
    # versions a mirror must hold for this minor (kubeprem.artifacts.cache):
    # containerd (1.6 with config version 2, 2.x with version 3), runc, CNI plugins
    containerd_version: str
    runc_version: str
    cni_plugins_version: str
    # kube-controller-manager still serves plain HTTP on 10252 in 1.20 unless
    # --port=0; the flag (and the insecure port) is gone from 1.24.
    controller_manager_port_flag: bool
    # kube-scheduler 1.20 serves plain-HTTP healthz/metrics on 10251 and,
    # once --config is given, ignores --port (cmd/kube-scheduler/app/options
    # ApplyToFromLoadedConfig) while rejecting port 0 in the file; the best it
    # allows is loopback, via healthzBindAddress/metricsBindAddress (v1beta1).
    # Those fields are gone from the config API in v1beta3/v1: None.
    scheduler_insecure_bind: str | None
    # CNI spec version of the rendered network config: one that this row's
    # containerd (libcni) and CNI plugins both speak (Debian's containerd
    # 1.6.20 is built with libcni 1.1.2; plugins >= 1.0 support 1.0.0).
    cni_spec_version: str
    # KubeProxyConfiguration API version (v1alpha1 through 1.37, the only one)
    kube_proxy_config_api: str
    # etcd 3.6 turned the experimental-* flags into feature gates
    # (--experimental-initial-corrupt-check -> --feature-gates=InitialCorruptCheck=true)
    etcd_feature_gates: bool = False
    # KubeletConfiguration.failCgroupV1: from 1.35 the kubelet refuses cgroup v1
    # hosts unless it is false; kubeprem sets it false on such hosts only
    kubelet_fail_cgroup_v1: bool = False
    # the Go build modules kubeprem pins for artifacts.source: go-modules
    # (kubeprem.artifacts.gomod); False: 1.20, built from Debian's source
    go_modules: bool = False
    # etcd 3.6's etcdctl lost `snapshot status` and `snapshot restore`: etcdutl
    # (etcd's offline tool) does both, and ships beside etcd from 3.5 on
    etcdutl: bool = False


TABLE: dict[tuple[int, int], Features] = {
    (1, 20): Features(
        minor=(1, 20),
        scheduler_config_api="kubescheduler.config.k8s.io/v1beta1",
        kubelet_dockershim_flags=True,
        kubelet_endpoint_in_config=False,
        apiserver_insecure_port_flag=True,
        etcd_version="3.4.13",
        containerd_config_version=2,
        pause_image="k8s.gcr.io/pause:3.2",
        containerd_version="1.6.20",
        runc_version="1.1.5",
        cni_plugins_version="1.1.1",
        controller_manager_port_flag=True,
        scheduler_insecure_bind="127.0.0.1:10251",
        cni_spec_version="1.0.0",
        kube_proxy_config_api="kubeproxy.config.k8s.io/v1alpha1",
    ),
    # Current releases: etcd 3.6, containerd 2 (config version 3), runc 1.5,
    # CNI plugins 1.10, all built from the Go modules in kubeprem.artifacts.
    **{
        (1, m): Features(
            minor=(1, m),
            scheduler_config_api="kubescheduler.config.k8s.io/v1",
            kubelet_dockershim_flags=False,
            kubelet_endpoint_in_config=True,
            apiserver_insecure_port_flag=False,
            etcd_version="3.6.17",
            containerd_config_version=3,
            pause_image="registry.k8s.io/pause:3.10.2",
            containerd_version="2.4.2",
            runc_version="1.5.3",
            cni_plugins_version="1.10.0",
            controller_manager_port_flag=False,
            scheduler_insecure_bind=None,
            cni_spec_version="1.0.0",
            kube_proxy_config_api="kubeproxy.config.k8s.io/v1alpha1",
            etcd_feature_gates=True,
            kubelet_fail_cgroup_v1=True,
            go_modules=True,
            etcdutl=True,
        )
        for m in range(35, 38)
    },
}

SUPPORTED: frozenset[tuple[int, int]] = frozenset(TABLE)


def supported_text() -> str:
    """'1.20.x, 1.35.x, 1.36.x, 1.37.x' for error messages."""
    return ", ".join(f"{a}.{b}.x" for a, b in sorted(SUPPORTED))


def features(site: Site) -> Features:
    return TABLE[site.cluster.minor]

"""kube-apiserver on each ``control-plane`` machine.

Called by the render command and the plan. The certificates, keys and the
encryption configuration it names are placed by the PKI files module; this
module renders the unit (flags) and, when auditing is on, the audit policy.

Every API server talks to every etcd member (with its etcd client
certificate) and reaches kubelets by address, since node names need not
resolve on an on-premises network (see LAB-NOTES.md).
"""

from __future__ import annotations

from kubeprem.components import audit, etcd, haproxy, paths
from kubeprem.components.base import File, HostContext, Rendered
from kubeprem.components.systemd import flags, unit
from kubeprem.components.versions import features
from kubeprem.site.model import Site

SERVICE = "kube-apiserver.service"
BIND_ADDRESS = "0.0.0.0"  # every address: HAProxy, kubelets and admins reach it directly

# CN of the front-proxy client certificate (kubeadm's): the only identity
# allowed to assert users through the X-Remote-* headers.
FRONT_PROXY_CLIENT_CN = "front-proxy-client"


def service_account_issuer(site: Site) -> str:
    """Issuer (and audience) of service-account tokens, kubeadm's choice."""
    return f"https://kubernetes.default.svc.{site.cluster.domain}"


# seconds added to HAProxy's drain time, for the check's own timeout
DRAIN_MARGIN = 2


def shutdown_delay(site: Site) -> str | None:
    """--shutdown-delay-duration: HAProxy's drain time and a margin when the
    API is behind HAProxy (machines with the ``lb`` role), otherwise none."""
    if not any(m.has("lb") for m in site.machines):
        return None
    return f"{haproxy.Timeouts().drain_seconds() + DRAIN_MARGIN}s"


def argv(ctx: HostContext) -> list[str]:
    site, m = ctx.site, ctx.machine
    feats = features(site)
    pairs: dict[str, str | int | bool | None] = {
        # serving
        "advertise-address": str(m.address),
        "bind-address": BIND_ADDRESS,
        "secure-port": site.api.apiserver_port,
        "tls-cert-file": paths.APISERVER_CRT,
        "tls-private-key-file": paths.APISERVER_KEY,
        "tls-min-version": "VersionTLS12",
        # 1.20 accepts only 0 and serves no plain HTTP either way; kept
        # because the CIS benchmark for that release audits the flag
        "insecure-port": 0 if feats.apiserver_insecure_port_flag else None,
        # authentication and authorization
        "anonymous-auth": False,
        "client-ca-file": paths.CA_CRT,
        "authorization-mode": "Node,RBAC",
        "enable-admission-plugins": "NodeRestriction",
        "allow-privileged": True,
        "profiling": False,
        # service accounts
        "service-account-issuer": service_account_issuer(site),
        "api-audiences": service_account_issuer(site),
        "service-account-key-file": paths.SA_PUB,
        "service-account-signing-key-file": paths.SA_KEY,
        "service-account-lookup": True,
        # etcd
        "etcd-servers": ",".join(etcd.client_urls(site)),
        "etcd-cafile": paths.ETCD_CA_CRT,
        "etcd-certfile": paths.APISERVER_ETCD_CLIENT_CRT,
        "etcd-keyfile": paths.APISERVER_ETCD_CLIENT_KEY,
        "encryption-provider-config": (
            paths.ENCRYPTION_CONFIG if site.encryption.at_rest else None
        ),
        # kubelets: mutual TLS, by address
        "kubelet-certificate-authority": paths.CA_CRT,
        "kubelet-client-certificate": paths.APISERVER_KUBELET_CLIENT_CRT,
        "kubelet-client-key": paths.APISERVER_KUBELET_CLIENT_KEY,
        "kubelet-preferred-address-types": "InternalIP,Hostname,ExternalIP",
        # aggregation layer (front proxy)
        "proxy-client-cert-file": paths.FRONT_PROXY_CLIENT_CRT,
        "proxy-client-key-file": paths.FRONT_PROXY_CLIENT_KEY,
        "requestheader-client-ca-file": paths.FRONT_PROXY_CA_CRT,
        "requestheader-allowed-names": FRONT_PROXY_CLIENT_CN,
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-username-headers": "X-Remote-User",
        # cluster
        "service-cluster-ip-range": str(site.network.service_cidr),
        "event-ttl": "1h",
        # on stop, /readyz turns red at once while requests are still
        # served, until HAProxy has taken this server out of the pool: a
        # restart (new certificate, new flags) then costs clients nothing
        "shutdown-delay-duration": shutdown_delay(site),
        **audit.apiserver_flags(site),
    }
    return [f"{paths.BIN_DIR}/kube-apiserver", *flags(pairs)]


def render(ctx: HostContext) -> Rendered:
    path, text = unit(
        SERVICE,
        "Kubernetes API server",
        argv(ctx),
        documentation="https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/",
    )
    files = [File.text(path, text)]
    if ctx.site.audit.enabled:
        files.append(audit.policy_file())
    return Rendered(component="kube-apiserver", files=tuple(files), services=(SERVICE,))

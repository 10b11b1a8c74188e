"""Cluster DNS: CoreDNS on current releases, kubeprem's dnsmasq server on the legacy one.

Called by the apply workflow's ``cluster-dns`` phase (``deploy``), by tests
(``manifests``) and by the lab test in CI (``dns_check``).

Which server runs (``DnsOptions.server``; ``auto`` is the default):

- ``coredns`` -- chosen by ``auto`` for every release kubeprem builds from
  Go modules (``features(site).go_modules``: 1.35 to 1.37), with the
  catalogue's ``coredns`` image (CoreDNS built from the pinned module
  ``coredns-1.15.0``, kubeprem.images), and on any release whose site
  ``images:`` list names a CoreDNS image (a reference whose last path part is
  ``coredns``, e.g. ``registry.k8s.io/coredns/coredns:v1.11.1`` with its
  archive), which is then used as is. Corefile: one server block for the
  site's domain and the reverse zones of the service and pod networks
  (the ``kubernetes`` plugin, ``pods insecure``, ``cache``, ``health`` with
  lame duck and ``ready`` endpoints, Prometheus metrics on 9153, ``reload``
  of the Corefile); a ``.`` block with ``forward`` and ``loop`` only when
  upstream servers are given.
- ``dnsmasq`` -- the legacy 1.20 path (binaries from Debian sources) and the
  past rows without a CoreDNS image. The catalogue's ``cluster-dns`` image
  (dnsmasq and python3 from Debian) runs two containers: dnsmasq, and
  kubeprem's controller (``cluster_dns.py``, mounted from a ConfigMap) that
  lists Services, Endpoints and Pods every 2 s and writes the hosts file
  dnsmasq watches. Names as with CoreDNS: ``<svc>.<ns>.svc.<domain>``, every
  ready pod of a headless Service under its name, StatefulSet pods as
  ``<pod>.<svc>.<ns>.svc.<domain>``, pods as ``<a-b-c-d>.<ns>.pod.<domain>``.
  No SRV records and no ExternalName Services.

Both: Deployment ``cluster-dns`` in kube-system (2 replicas, spread over the
workers, PodDisruptionBudget, probes, resources, no root, no added
capabilities: the servers listen on 5353; with more than one replica the
pods delete a peer that stopped answering, ``peer_watch.py``: in the
dnsmasq controller, and as a ``peer-watch`` sidecar of the ``cluster-dns``
image beside CoreDNS), Service ``kube-dns`` at
``site.network.cluster_dns`` (the kubelets' ``clusterDNS``) on 53/UDP and
53/TCP. Same names and selector for both, so switching server is an in-place
update. Names outside the cluster domain go to ``DnsOptions.upstream`` when
given, and are never forwarded otherwise (air-gapped): both servers
answer them REFUSED.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Literal

from kubeprem.addons import cluster_dns as controller
from kubeprem.addons import peer_watch
from kubeprem.addons.kubectl import Obj, apply_objects, rollout
from kubeprem.apps import base as b
from kubeprem.components.versions import features
from kubeprem.errors import OperationError
from kubeprem.images.builder import image_refs
from kubeprem.site.model import Site
from kubeprem.transport.base import Transport
from kubeprem.workflows import gates
from kubeprem.yamltext import dump_yaml

Server = Literal["coredns", "dnsmasq"]

NAMESPACE = "kube-system"
NAME = "cluster-dns"
SERVICE = "kube-dns"  # the name clients and tools expect (kubectl cluster-info, ...)
ROLE = "kubeprem:cluster-dns"
CATALOGUE_IMAGE = "cluster-dns"  # dnsmasq and the controller
COREDNS_IMAGE = "coredns"  # CoreDNS built from its pinned Go module
PORT = 5353  # inside the pod: no root, no NET_BIND_SERVICE
HEALTH_PORT = 8081
HOSTS_DIR = "/run/cluster-dns/hosts"
SCRIPT_DIR = "/opt/cluster-dns"
SCRIPT = "cluster_dns.py"
PEER_WATCH = "peer_watch.py"  # imported by SCRIPT from the same folder
CHECK_POD = "kubeprem-dns-check"
SELECTOR = {"k8s-app": "kube-dns"}
ACCEPT = "kubeprem.io/accept"
RUN_AS = 65534  # nobody, in Debian's images and CoreDNS's alike
# unanswered probes (two a second) before a controller deletes a peer DNS pod
# that still sits in the Service's endpoints: its machine is likely off
PEER_FAILURES = 4
PEER_WATCH_HEALTH = 8406  # CoreDNS's peer-watch sidecar: /health


@dataclass(frozen=True)
class DnsOptions:
    """How cluster DNS is set up. ``upstream``: servers for names outside the
    cluster domain (empty: answer the cluster only, as an air-gapped site needs)."""

    server: Literal["auto", "coredns", "dnsmasq"] = "auto"
    upstream: tuple[str, ...] = ()
    replicas: int = 2


def site_coredns_image(site: Site) -> str | None:
    """The site's own CoreDNS image reference, if its image list names one."""
    for image in site.images:
        repository = image.name.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
        if repository == "coredns":
            return image.name
    return None


def coredns_image(site: Site, refs: dict[str, str] | None = None) -> str | None:
    """The CoreDNS image the site runs: its own when its images: list names
    one, else the catalogue's on releases built from Go modules (kubeprem
    builds CoreDNS from its pinned module there); None on the other rows.
    ``refs``: catalogue image references (``image_refs(site)`` by default)."""
    own = site_coredns_image(site)
    if own is not None:
        return own
    if features(site).go_modules:
        return (refs or image_refs(site))[COREDNS_IMAGE]
    return None


def server(site: Site, options: DnsOptions = DnsOptions()) -> Server:
    have_coredns = coredns_image(site) is not None
    if options.server != "auto":
        if options.server == "coredns" and not have_coredns:
            raise OperationError(
                f"cluster DNS: server coredns needs a CoreDNS image: kubeprem builds one for "
                f"releases built from Go modules, not {site.cluster.version}; name one in the "
                "site's images: list (e.g. registry.k8s.io/coredns/coredns:v1.11.1 with its archive)"
            )
        return options.server
    return "coredns" if have_coredns else "dnsmasq"


def catalogue_images(site: Site, options: DnsOptions = DnsOptions()) -> tuple[str, ...]:
    """The catalogue images apply must import for cluster DNS: CoreDNS's
    (unless the site brings its own) and, with more than one replica, the
    ``cluster-dns`` image its peer-watch sidecar runs (python3); dnsmasq's."""
    if server(site, options) == "dnsmasq":
        return (CATALOGUE_IMAGE,)
    own = () if site_coredns_image(site) is not None else (COREDNS_IMAGE,)
    return own + ((CATALOGUE_IMAGE,) if options.replicas > 1 else ())


def reverse_zones(site: Site) -> list[str]:
    zones: list[str] = []
    for net in (site.network.service_cidr, site.network.pod_cidr):
        zones += controller.reverse_zones(str(IPv4Network(net)))
    return list(dict.fromkeys(zones))


def corefile(site: Site, options: DnsOptions = DnsOptions()) -> str:
    """A server block on 5353 for the cluster's zones only (the domain and the
    reverse zones of the service and pod networks): CoreDNS answers REFUSED,
    without logging an error, to a name of no block, as dnsmasq does here, so
    nothing leaves the cluster. Upstream servers add a ``.`` block that
    forwards, with ``loop`` (which only guards forwarding). Plugin order is
    CoreDNS's own (plugin.cfg), not this text's; ``health`` and ``ready``
    are process-wide, in the first block only."""
    domain = site.cluster.domain
    zones = [domain, *reverse_zones(site)]
    text = (
        " ".join(f"{z}:{PORT}" for z in zones) + " {\n"
        "    errors\n"
        "    health {\n"
        "        lameduck 5s\n"
        "    }\n"
        "    ready\n"
        f"    kubernetes {' '.join(zones)} {{\n"
        "        pods insecure\n"
        # 5 s, as the dnsmasq server answers: a failover's new pod address must
        # reach HAProxy's resolvers (hold valid 1s) within seconds, not 30
        "        ttl 5\n"
        "    }\n"
        "    prometheus :9153\n"
        "    cache 5\n"
        "    reload\n"
        "    loadbalance\n"
        "}\n"
    )
    if options.upstream:
        text += (
            f".:{PORT} {{\n"
            "    errors\n"
            f"    forward . {' '.join(options.upstream)}\n"
            "    loop\n"
            "    prometheus :9153\n"
            "    cache 30\n"
            "}\n"
        )
    return text


def dnsmasq_args(site: Site, options: DnsOptions = DnsOptions()) -> list[str]:
    args = [
        "--keep-in-foreground",
        "--log-facility=-",
        "--conf-file=/dev/null",  # nothing from the image's /etc
        f"--port={PORT}",
        "--pid-file=",  # none: the root filesystem is read-only
        "--no-hosts",
        "--no-resolv",
        f"--hostsdir={HOSTS_DIR}",
        # answer the cluster domain and its reverse zones from the hosts file
        # only: unknown names are NXDOMAIN, never forwarded
        f"--local=/{site.cluster.domain}/",
        *(f"--local=/{zone}/" for zone in reverse_zones(site)),
        "--domain-needed",
        "--bogus-priv",
        "--local-ttl=5",
        "--neg-ttl=5",
    ]
    args += [f"--server={s}" for s in options.upstream]
    return args


def controller_source() -> str:
    return Path(controller.__file__).read_text(encoding="utf-8")


def peer_watch_source() -> str:
    """peer_watch.py, which the controller imports from its own folder."""
    return Path(peer_watch.__file__).read_text(encoding="utf-8")


def _pdb_api(site: Site) -> str:
    # policy/v1 arrives in 1.21 and v1beta1 is gone from 1.25
    return "policy/v1beta1" if site.cluster.minor < (1, 21) else "policy/v1"


def _labels() -> dict[str, str]:
    return {**b.labels(NAME, "dns"), **SELECTOR}


def _rbac(lbls: dict[str, str]) -> list[Obj]:
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": b.meta(NAME, NAMESPACE, lbls),
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": b.meta(ROLE, None, lbls),
        # CoreDNS's kubernetes plugin also watches EndpointSlices and
        # namespaces; the dnsmasq controller needs only these three
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["endpoints", "pods", "services"],
                "verbs": ["list", "watch"],
            }
        ],
    }
    binding = b.role_binding(ROLE, None, lbls, ROLE, NAME, NAMESPACE)
    return [account, role, binding]


def _peer_rbac(lbls: dict[str, str]) -> list[Obj]:
    """The dnsmasq controller, or CoreDNS's peer-watch sidecar, deletes a peer
    DNS pod that stopped answering (kubeprem.addons.peer_watch): pods of its
    own namespace only."""
    name = f"{ROLE}-peers"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": b.meta(name, NAMESPACE, lbls),
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}],
    }
    return [role, b.role_binding(name, NAMESPACE, lbls, name, NAME, NAMESPACE)]


def _coredns_rules(site: Site) -> list[Obj]:
    return [
        {
            "apiGroups": [""],
            "resources": ["endpoints", "services", "pods", "namespaces"],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        },
    ]


def _dns_ports() -> list[Obj]:
    return [
        {"name": "dns", "containerPort": PORT, "protocol": "UDP"},
        {"name": "dns-tcp", "containerPort": PORT, "protocol": "TCP"},
    ]


def _hardened(container: Obj) -> Obj:
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    return container


def _dnsmasq_containers(site: Site, options: DnsOptions, image: str) -> list[Obj]:
    hosts = b.Mount("hosts", HOSTS_DIR)
    dnsmasq = b.Container(
        name="dnsmasq",
        image=image,
        resources=b.Resources("20m", "32Mi"),
        command=("/usr/sbin/dnsmasq",),
        args=tuple(dnsmasq_args(site, options)),
        mounts=(b.Mount("hosts", HOSTS_DIR, read_only=True),),
        readiness=b.Probe("tcp", PORT, period=5),
        liveness=b.Probe("tcp", PORT, period=10, failures=5, initial_delay=10),
    ).to_dict()
    dnsmasq["ports"] = _dns_ports()
    ctl = b.Container(
        name="controller",
        image=image,
        resources=b.Resources("20m", "128Mi"),
        command=("/usr/bin/python3", f"{SCRIPT_DIR}/{SCRIPT}", "run"),
        args=(
            f"--domain={site.cluster.domain}",
            f"--hosts-dir={HOSTS_DIR}",
            "--interval=2",
            f"--dns-port={PORT}",
            f"--health-port={HEALTH_PORT}",
            "--peer-label=" + ",".join(f"{k}={v}" for k, v in SELECTOR.items()),
            f"--peer-failures={PEER_FAILURES}",
        ),
        ports=(("health", HEALTH_PORT),),
        env=(b.env("PYTHONDONTWRITEBYTECODE", "1"),),
        mounts=(hosts, b.Mount("controller", SCRIPT_DIR, read_only=True)),
        readiness=b.Probe("http", f"{HEALTH_PORT}:/ready", period=5),
        liveness=b.Probe("http", f"{HEALTH_PORT}:/health", period=10, failures=5),
    ).to_dict()
    return [_hardened(dnsmasq), _hardened(ctl)]


def _coredns_containers(image: str, watch_image: str | None) -> list[Obj]:
    c = b.Container(
        name="coredns",
        image=image,
        # upstream's Deployment (coredns/deployment, kubeadm): 100m, 170Mi limit
        resources=b.Resources("100m", "170Mi"),
        args=("-conf", "/etc/coredns/Corefile"),
        mounts=(b.Mount("config", "/etc/coredns", read_only=True),),
        readiness=b.Probe("http", "8181:/ready", period=5),
        liveness=b.Probe("http", "8080:/health", period=10, failures=5, initial_delay=30),
    ).to_dict()
    c["ports"] = [
        *_dns_ports(),
        {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
    ]
    if watch_image is None:
        return [_hardened(c)]
    # the dnsmasq controller's peer probing (peer_watch.py) as a sidecar: a
    # DNS pod on a machine that went off leaves the Service in seconds, not
    # after the node's 40 s grace period (docs/dns.md)
    watch = b.Container(
        name="peer-watch",
        image=watch_image,
        # python3 with the pod list: 27 MiB resident on the lab
        resources=b.Resources("20m", "48Mi"),
        command=(
            "/usr/bin/python3",
            f"{SCRIPT_DIR}/{PEER_WATCH}",
            "--selector=" + ",".join(f"{k}={v}" for k, v in SELECTOR.items()),
            f"--port={PORT}",
            f"--failures={PEER_FAILURES}",
            f"--health-port={PEER_WATCH_HEALTH}",
        ),
        ports=(("peer-health", PEER_WATCH_HEALTH),),
        env=(b.env("PYTHONDONTWRITEBYTECODE", "1"),),
        mounts=(b.Mount("config", SCRIPT_DIR, read_only=True),),
        readiness=b.Probe("http", f"{PEER_WATCH_HEALTH}:/health", period=10),
        liveness=b.Probe("http", f"{PEER_WATCH_HEALTH}:/health", period=10, failures=3),
    ).to_dict()
    return [_hardened(c), _hardened(watch)]


def manifests(
    site: Site, options: DnsOptions = DnsOptions(), refs: dict[str, str] | None = None
) -> list[Obj]:
    """Every object of the addon, in apply order. ``refs``: catalogue image
    references (``kubeprem.images.image_refs`` by default)."""
    kind = server(site, options)
    lbls = _labels()
    objs = _rbac(lbls)
    if kind == "coredns":
        objs[1]["rules"] = _coredns_rules(site)
        image = coredns_image(site, refs)
        assert image is not None
        data = {"Corefile": corefile(site, options)}
        watch = options.replicas > 1  # a single pod has no peer to watch
        if watch:
            data[PEER_WATCH] = peer_watch_source()
            objs += _peer_rbac(lbls)
        watch_image = (refs or image_refs(site))[CATALOGUE_IMAGE] if watch else None
        containers = _coredns_containers(image, watch_image)
        volume = b.volume_config("config", NAME)
    else:
        image = (refs or image_refs(site))[CATALOGUE_IMAGE]
        data = {SCRIPT: controller_source(), PEER_WATCH: peer_watch_source()}
        containers = _dnsmasq_containers(site, options, image)
        volume = b.volume_config("controller", NAME)
        objs += _peer_rbac(lbls)
    config = b.config_map(NAME, NAMESPACE, lbls, data)
    digest = hashlib.sha256(dump_yaml(data).encode()).hexdigest()
    pod: Obj = {
        "affinity": b.anti_affinity(SELECTOR, "preferred"),
        "automountServiceAccountToken": True,
        "containers": containers,
        "dnsPolicy": "Default",  # the node's resolver, never itself
        "enableServiceLinks": False,
        "priorityClassName": "system-cluster-critical",
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS},
        "serviceAccountName": NAME,
        "terminationGracePeriodSeconds": 30,
        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
        # never two DNS pods on one worker while another has none (the preferred
        # anti-affinity alone put both on one worker in a rolling update): a
        # machine that goes off takes at most one, and its peer deletes it
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": dict(SELECTOR)},
            }
        ],
        "volumes": [volume] + ([b.volume_memory("hosts", "16Mi")] if kind == "dnsmasq" else []),
    }
    deployment: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": b.meta(NAME, NAMESPACE, lbls, {"kubeprem.io/dns-server": kind}),
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": dict(SELECTOR)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
            },
            "template": {
                "metadata": {
                    "labels": dict(lbls),
                    "annotations": {"kubeprem.io/config-sha256": digest},
                },
                "spec": pod,
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": b.meta(SERVICE, NAMESPACE, lbls),
        "spec": {
            "clusterIP": str(site.network.cluster_dns),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": "dns-tcp"},
            ],
            "selector": dict(SELECTOR),
            "type": "ClusterIP",
        },
    }
    budget = {
        "apiVersion": _pdb_api(site),
        "kind": "PodDisruptionBudget",
        "metadata": b.meta(NAME, NAMESPACE, lbls),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(SELECTOR)}},
    }
    return [*objs, config, service, deployment, budget]


def manifests_text(site: Site, options: DnsOptions = DnsOptions()) -> str:
    return dump_yaml(*manifests(site, options))


def check_pod(site: Site, refs: dict[str, str] | None = None) -> Obj:
    """A one-shot pod that resolves the API's Service name as every pod does:
    through the resolv.conf the kubelet writes (clusterDNS, search path)."""
    name = f"kubernetes.default.svc.{site.cluster.domain}"
    c = b.Container(
        name="lookup",
        image=(refs or image_refs(site))["busybox"],
        resources=b.Resources("10m", "16Mi"),
        command=("/bin/busybox", "nslookup", name),
    ).to_dict()
    pod = b.PodSpec((), restart_never=True, termination_grace=1).to_dict()
    pod["containers"] = [_hardened(c)]
    pod["securityContext"] = {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": b.meta(
            CHECK_POD,
            NAMESPACE,
            b.labels("kubeprem-check", "dns"),
            {ACCEPT: "KP022, KP023: a one-shot lookup that exits within seconds"},
        ),
        "spec": pod,
    }


# -- on the cluster ---------------------------------------------------------------


async def deploy(
    site: Site, t: Transport, options: DnsOptions = DnsOptions(), timeout: int = 180
) -> tuple[int, str]:
    """Apply the addon where it differs, wait for its rollout, check a lookup.
    Returns (objects changed, evidence)."""
    changes = await apply_objects(t, manifests(site, options), "cluster DNS")
    await rollout(t, "deployment", NAME, NAMESPACE, timeout)
    evidence = await dns_check(t, site)
    kind = server(site, options)
    return changes, f"{kind}: {evidence}"


async def _lookup_in_running_pod(t: Transport, name: str) -> str | None:
    """nslookup from a ready smoke pod (busybox) when one exists: the same
    check as a fresh pod, an exec instead of a pod start (about 10 s saved on
    every converged apply). None when there is no such pod yet."""
    from kubeprem.addons import smoke  # smoke's namespace and pod parser

    r = await t.run(
        gates.kubectl("get", "pods", "-n", smoke.NAMESPACE, "-o", "json"),
        step="find a pod for the DNS check",
        check=False,
    )
    if not r.ok:
        return None
    try:
        ready = [p for p in smoke.parse_pods(json.loads(r.stdout)) if p.ready]
    except (ValueError, KeyError, TypeError):
        return None
    if not ready:
        return None
    out = await t.run(
        gates.kubectl(
            "exec", "-n", smoke.NAMESPACE, ready[0].name, "--", "/bin/busybox", "nslookup", name
        ),
        step="DNS lookup from a running pod",
        check=False,
    )
    return out.stdout if out.ok else None


def lookup_result(output: str, expected: str) -> str | None:
    """The ``Name:``/``Address:`` lines of busybox nslookup if ``expected`` is among them."""
    lines = [x.strip() for x in output.splitlines()]
    names = [i for i, x in enumerate(lines) if x.startswith("Name:")]
    # the lines before the first Name: are about the server asked
    found = [
        x for x in lines[names[0] if names else len(lines) :] if x.startswith(("Name:", "Address:"))
    ]
    answer = [x for x in found if x.split(None, 1)[-1].strip() == expected]
    return " ".join(" ".join(x.split()) for x in found) if answer else None


async def dns_check(t: Transport, site: Site, timeout: float = 90) -> str:
    """From a fresh pod (busybox, kube-system), resolve
    ``kubernetes.default.svc.<domain>`` through the cluster DNS Service; the
    answer must be the API's Service address. Creates that pod and removes
    it: nothing remains, nothing counts as a change. Returns the evidence."""
    want = str(site.network.kubernetes_service_ip)
    name = f"kubernetes.default.svc.{site.cluster.domain}"
    quick = await _lookup_in_running_pod(t, name)
    if quick is not None and lookup_result(quick, want) is not None:
        return f"a running pod resolved {name} to {want} via {site.network.cluster_dns}"
    delete = gates.kubectl(
        "delete", "pod", CHECK_POD, "-n", NAMESPACE, "--ignore-not-found", "--wait=true"
    )
    await t.run(delete, step="remove an old DNS check pod")
    await t.run(
        gates.kubectl("create", "-f", "-"),
        step="start the DNS check pod",
        stdin=dump_yaml(check_pod(site)).encode(),
    )
    try:
        await gates.until(
            t,
            gates.kubectl(
                "get", "pod", CHECK_POD, "-n", NAMESPACE, "-o", "jsonpath={.status.phase}"
            ),
            what="the DNS check pod to finish",
            timeout=timeout,
            interval=1,
            accept=lambda r: r.ok and r.stdout.strip() in ("Succeeded", "Failed"),
        )
        logs = await t.run(
            gates.kubectl("logs", CHECK_POD, "-n", NAMESPACE), step="read the DNS check"
        )
    finally:
        await t.run([*delete[:-1], "--wait=false"], step="remove the DNS check pod", check=False)
    evidence = lookup_result(logs.stdout, want)
    if evidence is None:
        tail = " | ".join(logs.stdout.strip().splitlines()[-4:])
        raise OperationError(
            f"{t.host}: cluster DNS check: a pod did not resolve {name} to {want} "
            f"through {site.network.cluster_dns}; nslookup said: {tail or '(nothing)'}"
        )
    return f"a pod resolved {name} to {want} via {site.network.cluster_dns}"


__all__: Sequence[str] = (
    "DnsOptions",
    "catalogue_images",
    "coredns_image",
    "corefile",
    "deploy",
    "dns_check",
    "manifests",
    "manifests_text",
    "server",
)

"""The smoke workload: pods on every worker that reach each other and a Service by name.

Called by the apply workflow's last phase (``deploy``) and by the lab test
in CI (``smoke_check``).

Namespace ``kubeprem-smoke``: Deployment ``smoke`` with one pod per worker
(topologySpreadConstraints on the hostname, DoNotSchedule), each running
busybox ``httpd`` on 8080 serving its own pod name; Service ``smoke`` (80 ->
8080); a PodDisruptionBudget. The objects stay: they are stable, so a
second apply's server-side diff is empty and the phase reports zero
changes. The check creates nothing: it ``kubectl exec``s into one pod and,
with ``busybox nc``, fetches the page of a pod on a different node (by pod
IP: the CNI routes between workers) and of the Service by its DNS name
(cluster DNS, the Service address, kube-proxy). Remove it all with
``kubectl delete namespace kubeprem-smoke``; the next apply recreates it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubeprem.addons.kubectl import Obj, apply_objects, get_json, rollout
from kubeprem.apps import base as b
from kubeprem.errors import OperationError
from kubeprem.images.builder import image_refs
from kubeprem.site.model import Site
from kubeprem.transport.base import Transport
from kubeprem.workflows import gates

NAMESPACE = "kubeprem-smoke"
NAME = "smoke"
PORT = 8080
RUN_AS = 65534
# seconds a fetch is retried before the check fails (see _fetch)
SETTLE = 60.0
# busybox has no /bin/sh link; every applet is called through /bin/busybox
SERVE = f"/bin/busybox hostname > /www/index.html && exec /bin/busybox httpd -f -p {PORT} -h /www"
# $1 host, $2 port: values are arguments, never part of the script
FETCH = 'printf \'GET / HTTP/1.0\\r\\n\\r\\n\' | /bin/busybox nc -w 3 "$1" "$2"'


def _pdb_api(site: Site) -> str:
    return "policy/v1beta1" if site.cluster.minor < (1, 21) else "policy/v1"


def manifests(site: Site, refs: dict[str, str] | None = None) -> list[Obj]:
    """Namespace, Service, Deployment, PodDisruptionBudget, in apply order."""
    lbls = b.labels(NAME, "smoke")
    sel = b.selector(NAME, "smoke")
    image = (refs or image_refs(site))["busybox"]
    c = b.Container(
        name="httpd",
        image=image,
        resources=b.Resources("10m", "16Mi"),
        command=("/bin/busybox", "sh", "-c", SERVE),
        ports=(("http", PORT),),
        mounts=(b.Mount("www", "/www"),),
        readiness=b.Probe("http", f"{PORT}:/", period=5),
        liveness=b.Probe("tcp", PORT, period=10, failures=3),
    ).to_dict()
    c["securityContext"]["readOnlyRootFilesystem"] = True
    pod = b.PodSpec((), volumes=(b.volume_memory("www"),), termination_grace=5).to_dict()
    pod["containers"] = [c]
    pod["securityContext"] = {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS}
    pod["topologySpreadConstraints"] = [
        {
            "labelSelector": {"matchLabels": dict(sel)},
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
        }
    ]
    deployment = b.deployment(
        NAME, NAMESPACE, lbls, sel, replicas=max(1, len(site.workers)), pod=b.PodSpec(())
    )
    deployment["spec"]["template"]["spec"] = pod
    service = b.service(NAME, NAMESPACE, lbls, sel, [("http", 80)])
    service["spec"]["ports"][0]["targetPort"] = "http"
    budget = b.pdb(NAME, NAMESPACE, lbls, sel)
    budget["apiVersion"] = _pdb_api(site)
    return [b.namespace(NAMESPACE, NAME), service, deployment, budget]


@dataclass(frozen=True)
class SmokePod:
    name: str
    node: str
    ip: str
    ready: bool


def parse_pods(doc: Obj) -> list[SmokePod]:
    """The smoke pods from ``kubectl get pods -o json``, by node then name."""
    out = []
    for item in doc.get("items", []):
        status = item.get("status", {})
        if item.get("metadata", {}).get("deletionTimestamp"):
            continue
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions", [])
        )
        out.append(
            SmokePod(
                item["metadata"]["name"],
                item.get("spec", {}).get("nodeName", ""),
                status.get("podIP", ""),
                ready,
            )
        )
    return sorted(out, key=lambda p: (p.node, p.name))


def pick(pods: list[SmokePod]) -> tuple[SmokePod, SmokePod | None]:
    """A client pod and a ready pod on another node (None: only one node has one)."""
    ready = [p for p in pods if p.ready and p.ip and p.node]
    if not ready:
        raise OperationError(f"smoke: no smoke pod is ready in {NAMESPACE}")
    client = ready[0]
    other = next((p for p in ready if p.node != client.node), None)
    return client, other


def body(response: str) -> str:
    """The body of an HTTP response (after the empty line), stripped."""
    _, _, rest = response.replace("\r\n", "\n").partition("\n\n")
    return rest.strip()


async def _fetch(
    t: Transport, client: SmokePod, host: str, port: int, settle: float = SETTLE
) -> str:
    """The page at ``host:port`` fetched from inside ``client``. Tried again
    every 2 s for up to ``settle`` seconds: right after kubelets, kube-proxies
    or the DNS pods restart, a Service can lack ready endpoints for a few
    seconds; a cluster that still fails after that fails the check."""
    argv = gates.kubectl(
        "exec",
        "-n",
        NAMESPACE,
        client.name,
        "--",
        "/bin/busybox",
        "sh",
        "-c",
        FETCH,
        "smoke-check",
        host,
        str(port),
    )
    try:
        r = await gates.until(
            t,
            argv,
            what=f"a page from http://{host}:{port}/",
            timeout=settle,
            interval=2,
            accept=lambda r: r.ok and r.stdout.startswith("HTTP/1."),
        )
    except OperationError as exc:
        raise OperationError(
            f"smoke: pod {client.name} on {client.node} could not fetch "
            f"http://{host}:{port}/: {exc}"
        ) from exc
    return body(r.stdout)


async def smoke_check(t: Transport, site: Site, settle: float = SETTLE) -> str:
    """From one smoke pod, fetch a pod on a different node and the Service by
    its DNS name; creates nothing. Returns the evidence, raises on failure."""
    pods = parse_pods(
        await get_json(
            t,
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            f"app.kubernetes.io/name={NAME}",
            step="list smoke pods",
        )
    )
    client, other = pick(pods)
    names = {p.name for p in pods}
    evidence = []
    if other is not None:
        got = await _fetch(t, client, other.ip, PORT, settle)
        if got != other.name:
            raise OperationError(
                f"smoke: {client.name} ({client.node}) fetched {other.ip}:{PORT} but got "
                f"{got[:80]!r}, not the page of {other.name} ({other.node})"
            )
        evidence.append(f"{client.name}@{client.node} -> {other.name}@{other.node} ({other.ip})")
    elif len(site.workers) > 1:
        raise OperationError(f"smoke: the ready smoke pods all run on {client.node}")
    dns_name = f"{NAME}.{NAMESPACE}.svc.{site.cluster.domain}"
    got = await _fetch(t, client, dns_name, 80, settle)
    if got not in names:
        raise OperationError(
            f"smoke: {client.name} fetched http://{dns_name}/ but got {got[:80]!r}, "
            "not the page of a smoke pod"
        )
    evidence.append(f"{client.name} -> {dns_name} answered by {got}")
    return "; ".join(evidence)


async def deploy(site: Site, t: Transport, timeout: int = 180) -> tuple[int, str]:
    """Apply the smoke objects where they differ, wait, check. (changes, evidence)"""
    changes = await apply_objects(t, manifests(site), "smoke workload")
    await rollout(t, "deployment", NAME, NAMESPACE, timeout)
    return changes, "pass: " + await smoke_check(t, site)

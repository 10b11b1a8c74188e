"""Peer watch: pods of one Deployment delete a peer that stopped answering.

This file runs inside pods (mounted from a ConfigMap, started with the
image's ``python3``); it uses the standard library only and imports nothing
from kubeprem. The cluster-DNS controller (``cluster_dns.py``, mounted
beside it) imports its pod, API and counting parts; the Redis proxies run it
as a sidecar (``python3 peer_watch.py --selector ... --port 6379``).

Why: a pod on a machine that lost power stays in its Services' endpoints
until the node is marked NotReady (the controller-manager's grace period,
40 s by default). Every connection kube-proxy sends there meanwhile hangs.
For stateless pods behind a Service (DNS servers, the Redis proxies) the
living peers can tell much sooner: each one probes the other ready pods
with the same labels twice a second, and when one has not answered
``--failures`` probes in a row while this pod's own server answers, deletes
that pod at once (grace period 0, only if it is still the same pod: a
``uid`` precondition). The endpoints controller then drops it from the
Service, kube-proxy drops its conntrack entries, and the Deployment starts
a replacement on a living machine. A pod that was only cut off costs a
restart, nothing more; so never use this for pods that hold state.

Only ready peers are probed: a pod that is starting, or that its kubelet
already reports unready, is out of the endpoints anyway.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

Obj = Mapping[str, Any]
Selector = Mapping[str, str]


# -- pure: which peers, which of them are dead -------------------------------------


class Peer(NamedTuple):
    name: str
    uid: str
    ip: str


def items(doc: Obj) -> list[Obj]:
    """The ``items`` of an API list, mappings only."""
    return [i for i in doc.get("items") or [] if isinstance(i, Mapping)]


def meta(obj: Obj) -> tuple[str, str]:
    """(namespace, name); an object without a namespace is in ``default``."""
    m = obj.get("metadata") or {}
    return str(m.get("namespace") or "default"), str(m.get("name") or "")


def is_ip(value: object) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def ready_peers(pods: Obj, namespace: str, selector: Selector, me: str) -> list[Peer]:
    """The other ready pods of ``namespace`` with every label of ``selector``
    (those in their Service's endpoints)."""
    out = []
    for pod in items(pods):
        ns, name = meta(pod)
        labels = (pod.get("metadata") or {}).get("labels") or {}
        status = pod.get("status") or {}
        if ns != namespace or name == me or any(labels.get(k) != v for k, v in selector.items()):
            continue
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        ip = status.get("podIP")
        if conds.get("Ready") == "True" and is_ip(ip):
            out.append(Peer(name, str((pod.get("metadata") or {}).get("uid") or ""), str(ip)))
    return sorted(out)


def dead_peers(
    misses: dict[str, int], answered: Mapping[Peer, bool], own_ok: bool, limit: int
) -> list[Peer]:
    """Count each peer's unanswered probes in a row (``misses``, by uid, updated
    in place) and return those that reached ``limit``. Nobody is dead while
    this pod's own server does not answer: then the fault is likely here."""
    for uid in [u for u in misses if u not in {p.uid for p in answered}]:
        del misses[uid]
    dead = []
    for peer, ok in answered.items():
        misses[peer.uid] = 0 if ok else misses.get(peer.uid, 0) + 1
        if own_ok and misses[peer.uid] >= limit:
            dead.append(peer)
    return dead


def parse_selector(text: str) -> Selector:
    """``KEY=VALUE[,KEY=VALUE...]``, as in ``kubectl get -l``."""
    out = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key or not value:
            raise ValueError(f"a selector is KEY=VALUE[,KEY=VALUE...], got {text!r}")
        out[key] = value
    return out


def selector_text(selector: Selector) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items())


# -- I/O: the API and the probes ---------------------------------------------------


class Api:
    """The in-cluster API: its address from the environment the kubelet sets,
    its CA and the (rotating) token from the service-account volume."""

    def __init__(self, sa_dir: str = SA_DIR) -> None:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.base = f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"
        self.sa_dir = sa_dir
        self.tls = ssl.create_default_context(cafile=f"{sa_dir}/ca.crt")

    def _bearer(self) -> str:
        with open(f"{self.sa_dir}/token", encoding="ascii") as f:
            return f.read().strip()  # reread: bound tokens rotate

    def get(self, path: str) -> Obj:
        req = urllib.request.Request(
            self.base + path,
            headers={"Authorization": f"Bearer {self._bearer()}", "Accept": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10, context=self.tls) as resp:
            doc: Obj = json.load(resp)
        return doc

    def namespace(self) -> str:
        with open(f"{self.sa_dir}/namespace", encoding="ascii") as f:
            return f.read().strip()

    def pods(self, namespace: str, selector: Selector) -> Obj:
        """Running pods of ``namespace`` matching ``selector``, from the API
        server's cache."""
        query = urllib.parse.urlencode(
            {
                "labelSelector": selector_text(selector),
                "fieldSelector": "status.phase=Running",
                "resourceVersion": "0",
            }
        )
        return self.get(f"/api/v1/namespaces/{namespace}/pods?{query}")

    def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """Delete a pod with grace period 0, only if it is still that pod (uid)."""
        body = json.dumps(
            {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": uid},
            }
        ).encode()
        req = urllib.request.Request(
            f"{self.base}/api/v1/namespaces/{namespace}/pods/{name}",
            data=body,
            method="DELETE",
            headers={
                "Authorization": f"Bearer {self._bearer()}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(req, timeout=10, context=self.tls):
            pass


def tcp_answers(ip: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``ip:port`` is accepted within ``timeout``."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def peer_loop(
    api: Api,
    pods: Callable[[], Obj],
    selector: Selector,
    answers: Callable[[str], bool],
    limit: int,
    log: Callable[[str], None],
    *,
    period: float = 0.5,
    beat: Callable[[], None] = lambda: None,
) -> None:
    """Probe the ready peers every ``period`` s (``answers(ip)``, and
    ``answers("127.0.0.1")`` for this pod); delete those that stopped
    answering (see the top). ``pods()`` gives the current pod list."""
    namespace, me = api.namespace(), socket.gethostname()
    misses: dict[str, int] = {}
    while True:
        started = time.monotonic()
        try:
            peers = ready_peers(pods(), namespace, selector, me)
            answered = {p: answers(p.ip) for p in peers}
            for peer in dead_peers(misses, answered, answers("127.0.0.1"), limit):
                log(f"peer {peer.name} ({peer.ip}) did not answer {limit} probes: deleting it")
                api.delete_pod_now(namespace, peer.name, peer.uid)
                misses.pop(peer.uid, None)
        except Exception as exc:  # the pod's own server goes on regardless
            log(f"peer check failed: {exc!r}")
        beat()  # the loop turns, even while the API does not answer
        time.sleep(max(0.0, period - (time.monotonic() - started)))


# -- the sidecar -------------------------------------------------------------------


class Listing:
    """The pod list, refreshed from the API at most every ``every`` seconds;
    the last good list is kept while the API does not answer."""

    def __init__(self, api: Api, selector: Selector, every: float) -> None:
        self.api, self.selector, self.every = api, selector, every
        self.namespace = api.namespace()
        self.doc: Obj = {}
        self.at = float("-inf")

    def __call__(self) -> Obj:
        if time.monotonic() - self.at >= self.every:
            self.doc = self.api.pods(self.namespace, self.selector)
            self.at = time.monotonic()
        return self.doc


def text_server(port: int, answer: Callable[[str], tuple[int, str]]) -> http.server.HTTPServer:
    """A plain-text HTTP server for the kubelet's probes, on every address:
    ``answer(path)`` gives the status and the text of a GET."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code, text = answer(self.path)
            body = (text + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return http.server.ThreadingHTTPServer(("", port), Handler)


def health_server(port: int, last_beat: list[float]) -> http.server.HTTPServer:
    """``/health``: 200 while the probe loop turns (a beat in the last 30 s)."""

    def answer(path: str) -> tuple[int, str]:
        if path != "/health":
            return 404, "unknown path"
        if time.monotonic() - last_beat[0] < 30:
            return 200, "peer loop running"
        return 503, "peer loop stuck"

    return text_server(port, answer)


def log(message: str) -> None:
    print(f"peer-watch: {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument(
        "--selector", required=True, help="KEY=VALUE[,KEY=VALUE...]: this pod and its peers"
    )
    p.add_argument("--port", type=int, required=True, help="the TCP port every peer answers on")
    p.add_argument("--failures", type=int, default=4, help="unanswered probes in a row")
    p.add_argument("--period", type=float, default=0.5, help="seconds between probe rounds")
    p.add_argument("--list-every", type=float, default=2.0, help="seconds between pod listings")
    p.add_argument("--health-port", type=int, default=8406, help="serves /health")
    args = p.parse_args(argv)
    try:
        selector = parse_selector(args.selector)
    except ValueError as exc:
        print(f"peer-watch: {exc}", file=sys.stderr)
        return 2
    # PID 1 of its container: without a handler SIGTERM is ignored
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    last_beat = [time.monotonic()]
    server = health_server(args.health_port, last_beat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = Api()
    log(f"peers {args.selector}, port {args.port}, every {args.period:g} s, limit {args.failures}")

    def beat() -> None:
        last_beat[0] = time.monotonic()

    peer_loop(
        api,
        Listing(api, selector, args.list_every),
        selector,
        lambda ip: tcp_answers(ip, args.port, timeout=max(0.2, args.period)),
        args.failures,
        log,
        period=args.period,
        beat=beat,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

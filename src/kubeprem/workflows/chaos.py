"""Chaos scenarios for `kubeprem verify --chaos`: break the cluster on purpose,
measure what a client sees through the VIP.

Called by the verify command and bench/chaos.py. A ``Probe`` (a thread on
the operator's machine) writes a ConfigMap through the VIP with the admin
certificate (stdlib HTTPS, one kept-alive connection, reconnecting after any
error) and reads it back, every 100 ms; a probe fails on any error, a wrong
value read back, or no answer within 1 s. ``outages`` turns the samples
into failure spans (pure). Scenarios:

- ``vip-failover``: power off the controller holding the VIP (lab: SIGKILL
  of its init; a real site: keepalived, HAProxy, the API server and etcd
  are stopped on it instead), check the VIP moved; goal: longest outage
  at most 3 s. The machine is powered on again and must rejoin.
- ``etcd-member-stop``: stop etcd on the leader; goal: at most 2 s of failed
  probes in total; restarted, it must rejoin and catch up (same revision).
- ``restore``: a namespace with a ConfigMap, a backup, a namespace created
  after the backup, the first namespace deleted, then a restore from the
  backup: the first is back, the later one gone. Its outage is the restore
  itself (the API is stopped on purpose); goal 180 s.
- ``redis-primary-poweroff``, ``postgresql-primary-poweroff`` (lab only,
  and by default only when the app is deployed): power off the worker that
  runs the app's primary while a client pod writes through the primary
  Service (``kubeprem.workflows.failover``); goals: writes back within 10 s
  (Redis) and 30 s (PostgreSQL), every acknowledged write read back, a new
  primary. Its timeline is the client's writes, not the API probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import math
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubeprem.errors import OperationError
from kubeprem.lab import machines as lab_machines
from kubeprem.lab.layout import plan_lab
from kubeprem.pki.store import pki_dir
from kubeprem.site.load import LoadedSite
from kubeprem.site.model import Site
from kubeprem.transport.base import Transport
from kubeprem.transport.ssh import SSHTransport
from kubeprem.workflows import backup, gates, restore
from kubeprem.workflows.hosts import ssh_targets

Say = Callable[[str], None]

PROBE_INTERVAL = 0.1
PROBE_TIMEOUT = 1.0
MAX_FAILED_LISTED = 100  # failed probe attempts listed in a result's details
PROBE_NAMESPACE = "default"
PROBE_NAME = "kubeprem-probe"


# -- the probe -------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the probe started, when this attempt began
    ok: bool
    seconds: float  # how long the attempt took
    error: str = ""


def outages(samples: Sequence[Sample]) -> list[tuple[float, float]]:
    """Failure spans (start, end): from the first failed attempt of a run to
    the start of the next successful one (or the end of the last attempt)."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for s in samples:
        if not s.ok and start is None:
            start = s.t
        elif s.ok and start is not None:
            spans.append((start, s.t))
            start = None
    if start is not None and samples:
        spans.append((start, samples[-1].t + samples[-1].seconds))
    return spans


def longest(spans: Sequence[tuple[float, float]]) -> float:
    return max((b - a for a, b in spans), default=0.0)


def total(spans: Sequence[tuple[float, float]]) -> float:
    return sum(b - a for a, b in spans)


@dataclass(frozen=True)
class ProbeTarget:
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def of(cls, loaded: LoadedSite) -> ProbeTarget:
        folder = pki_dir(loaded)
        site = loaded.site
        return cls(
            str(site.api.vip),
            site.api.port,
            folder / "ca.crt",
            folder / "admin.crt",
            folder / "admin.key",
        )


class Probe:
    """Writes and reads a ConfigMap through the VIP every ``interval`` seconds."""

    def __init__(
        self,
        target: ProbeTarget,
        *,
        interval: float = PROBE_INTERVAL,
        timeout: float = PROBE_TIMEOUT,
        name: str = PROBE_NAME,
    ) -> None:
        self.target = target
        self.interval = interval
        self.timeout = timeout
        self.name = name
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: http.client.HTTPSConnection | None = None
        self._ctx = ssl.create_default_context(cafile=str(target.ca))
        self._ctx.load_cert_chain(str(target.cert), str(target.key))
        self.t0 = 0.0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _request(self, method: str, path: str, body: bytes | None, ctype: str) -> tuple[int, bytes]:
        """One request on the kept-alive connection. When a server closed
        that connection while it was idle (an API server shutting down
        gracefully does), the request is sent once more on a new one, as
        HTTP clients do; a new connection that fails is a failure."""
        headers = {"Content-Type": ctype, "Accept": "application/json"}
        while True:
            fresh = self._conn is None
            if self._conn is None:
                self._conn = http.client.HTTPSConnection(
                    self.target.host, self.target.port, context=self._ctx, timeout=self.timeout
                )
            try:
                self._conn.request(method, path, body=body, headers=headers)
                resp = self._conn.getresponse()
                return resp.status, resp.read()
            except (
                http.client.RemoteDisconnected,
                BrokenPipeError,
                ConnectionResetError,
                ssl.SSLEOFError,
                ssl.SSLZeroReturnError,
            ):
                self._conn.close()
                self._conn = None
                if fresh:
                    raise

    def _path(self) -> str:
        return f"/api/v1/namespaces/{PROBE_NAMESPACE}/configmaps/{self.name}"

    def once(self, seq: int) -> None:
        """One write and read back; raises on any failure."""
        patch = json.dumps({"data": {"seq": str(seq)}}).encode()
        status, body = self._request("PATCH", self._path(), patch, "application/merge-patch+json")
        if status == 404:
            doc = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": self.name},
                "data": {"seq": str(seq)},
            }
            status, body = self._request(
                "POST",
                f"/api/v1/namespaces/{PROBE_NAMESPACE}/configmaps",
                json.dumps(doc).encode(),
                "application/json",
            )
        if status >= 300:
            raise OSError(f"write: HTTP {status} {body[:120]!r}")
        status, body = self._request("GET", self._path(), None, "application/json")
        if status != 200:
            raise OSError(f"read: HTTP {status}")
        if json.loads(body).get("data", {}).get("seq") != str(seq):
            raise OSError("read back a different value")

    def _loop(self) -> None:
        seq = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            seq += 1
            start = time.monotonic()
            error = ""
            try:
                self.once(seq)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:200]
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            took = time.monotonic() - start
            ok = not error and took <= self.timeout
            if not error and not ok:
                error = f"slow: {took:.2f} s"
            self.samples.append(Sample(start - self.t0, ok, took, error))
            next_at = max(next_at + self.interval, time.monotonic())
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="kubeprem-probe", daemon=True)
        self._thread.start()

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        return list(self.samples)


# -- results ---------------------------------------------------------------------


@dataclass
class ScenarioResult:
    name: str
    passed: bool
    outage_seconds: float  # the longest failure span
    goal_seconds: float
    failed_seconds: float = 0.0  # all failure spans together
    probes: int = 0
    failures: int = 0
    duration: float = 0.0
    marks: list[float] = field(default_factory=list)  # fault, recovery (probe seconds)
    details: dict[str, Any] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    timeline: str | None = None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            # None: the service never came back within the run
            "outage_seconds": (
                round(self.outage_seconds, 2) if math.isfinite(self.outage_seconds) else None
            ),
            "goal_seconds": self.goal_seconds,
            "failed_seconds": round(self.failed_seconds, 2),
            "probes": self.probes,
            "failures": self.failures,
            "duration_seconds": round(self.duration, 1),
            "details": self.details,
            "timeline": self.timeline,
            "error": self.error,
        }


def summarise(
    result: ScenarioResult, samples: Sequence[Sample], *, measure: str = "longest"
) -> None:
    spans = outages(samples)
    result.samples = list(samples)
    result.probes = len(samples)
    result.failures = sum(1 for s in samples if not s.ok)
    result.outage_seconds = longest(spans)
    result.failed_seconds = total(spans)
    result.duration = samples[-1].t + samples[-1].seconds if samples else 0.0
    errors: dict[str, int] = {}
    for s in samples:
        if not s.ok:
            key = s.error.split(":")[0]
            errors[key] = errors.get(key, 0) + 1
    result.details["probe_errors"] = errors
    result.details["failure_spans"] = [[round(a, 2), round(b, 2)] for a, b in spans]
    # each failed attempt (when it began, how long it took, why), so that a
    # missed goal can be explained from the JSON alone
    result.details["failed_probes"] = [
        [round(s.t, 2), round(s.seconds, 2), s.error[:200]] for s in samples if not s.ok
    ][:MAX_FAILED_LISTED]
    measured = result.outage_seconds if measure == "longest" else result.failed_seconds
    result.passed = result.passed and measured <= result.goal_seconds


# -- the machines ------------------------------------------------------------------


def is_lab(loaded: LoadedSite) -> bool:
    """True when this site's machines are this host's lab machines."""
    try:
        plan = plan_lab(loaded.site, lab_machines.lab_root())
    except Exception:  # a site the lab cannot model is not a lab
        return False
    return (plan.lab_dir / "lab.json").exists()


def parse_vip_holder(output: str, vip: str) -> bool:
    """Whether ``ip -o addr show`` lists ``vip`` as one of the machine's addresses."""
    for line in output.splitlines():
        parts = line.split()
        if "inet" in parts:
            addr = parts[parts.index("inet") + 1].split("/")[0]
            if addr == vip:
                return True
    return False


def parse_leader(output: str) -> str | None:
    """The leader's client endpoint from ``etcdctl endpoint status --cluster -w json``."""
    for doc in json.loads(output):
        st = doc["Status"]
        if st["leader"] == st["header"]["member_id"]:
            return str(doc["Endpoint"])
    return None


def revisions(output: str) -> dict[str, int]:
    """Endpoint -> revision, from ``etcdctl endpoint status --cluster -w json``."""
    return {str(d["Endpoint"]): int(d["Status"]["header"]["revision"]) for d in json.loads(output)}


class Cluster:
    """The machines as the scenarios see them: SSH transports that survive a
    machine's power cycle (a new connection after it comes back)."""

    def __init__(self, loaded: LoadedSite, say: Say) -> None:
        self.loaded = loaded
        self.site: Site = loaded.site
        self.say = say
        self.lab = is_lab(loaded)
        self.targets = ssh_targets(loaded)
        self.transports: dict[str, Transport] = {
            n: SSHTransport(t) for n, t in self.targets.items()
        }

    async def fresh(self, name: str) -> None:
        old = self.transports[name]
        self.transports[name] = SSHTransport(self.targets[name])
        with contextlib.suppress(TimeoutError, OSError, OperationError):
            await asyncio.wait_for(old.close(), timeout=5)

    async def close(self) -> None:
        for t in self.transports.values():
            with contextlib.suppress(TimeoutError, OSError, OperationError):
                await asyncio.wait_for(t.close(), timeout=5)

    def up(self, exclude: Sequence[str] = ()) -> Transport:
        """A controller's transport (not one of ``exclude``)."""
        for m in self.site.controllers:
            if m.name not in exclude:
                return self.transports[m.name]
        raise OperationError("no controller left to ask")

    async def vip_holder(self, exclude: Sequence[str] = ()) -> str | None:
        vip = str(self.site.api.vip)
        for m in self.site.machines:
            if not m.has("lb") or m.name in exclude:
                continue
            r = await self.transports[m.name].run(
                ["ip", "-o", "addr", "show"], step="find the VIP", check=False, timeout=10
            )
            if r.ok and parse_vip_holder(r.stdout, vip):
                return m.name
        return None

    async def power_off(self, name: str) -> str:
        if self.lab:
            await asyncio.to_thread(lab_machines.poweroff, self.loaded, name)
            return "lab machine's init killed (SIGKILL)"
        await self.transports[name].run(
            ["systemctl", "stop", "keepalived", "haproxy", "kube-apiserver", "etcd"],
            step="stop the control plane (chaos)",
        )
        return "keepalived, haproxy, kube-apiserver and etcd stopped"

    async def power_on(self, name: str) -> None:
        if self.lab:
            await asyncio.to_thread(lab_machines.lab_up, self.loaded, only=[name])
            await self.fresh(name)
            # The lab rebuilds a machine whose cached root filesystem changed
            # while it was off: it then comes back empty, and no wait helps.
            r = await self.transports[name].run(
                ["test", "-d", "/etc/kubernetes"],
                step="check the machine kept its disk",
                check=False,
            )
            if not r.ok:
                raise OperationError(
                    f"{name} came back without /etc/kubernetes: the lab rebuilt it from a changed "
                    "root filesystem; run `kubeprem apply` then `kubeprem restore ... latest`"
                )
        else:
            await self.transports[name].run(
                ["systemctl", "start", "etcd", "kube-apiserver", "haproxy", "keepalived"],
                step="start the control plane (chaos)",
            )

    async def healthy(self, timeout: float = 300) -> None:
        """etcd quorum with every member, every API server ready, the VIP answering."""
        t = self.up()
        n = len(self.site.etcd_members)

        def all_members(r: Any) -> bool:
            return bool(r.ok) and (r.stdout + r.stderr).count("is healthy") >= n

        await gates.until(
            t,
            gates.etcdctl("endpoint", "health", "--cluster"),
            what=f"all {n} etcd members healthy",
            timeout=timeout,
            interval=2,
            accept=all_members,
        )
        await gates.all_of(
            *(
                gates.apiserver_ready(self.transports[m.name], self.site, timeout=timeout)
                for m in self.site.controllers
            )
        )
        await gates.vip_ready(t, timeout=timeout)


Scenario = Callable[[Cluster, ProbeTarget], Awaitable[ScenarioResult]]


async def _observe(probe: Probe, seconds: float) -> None:
    await asyncio.sleep(seconds)


async def vip_failover(c: Cluster, target: ProbeTarget) -> ScenarioResult:
    result = ScenarioResult("vip-failover", True, 0.0, 3.0)
    holder = await c.vip_holder()
    if holder is None:
        raise OperationError(f"no lb machine holds the VIP {c.site.api.vip}")
    result.details["holder_before"] = holder
    probe = Probe(target)
    probe.start()
    try:
        await _observe(probe, 3)
        c.say(f"vip-failover: power off {holder} (holds the VIP)")
        result.marks.append(probe.now())
        result.details["fault"] = await c.power_off(holder)
        await _observe(probe, 15)
        after = await c.vip_holder(exclude=[holder])
        result.details["holder_after"] = after
        result.passed = after is not None and after != holder
        # The probe keeps running while the machine comes back: a VIP that
        # moves back to it (keepalived preemption) is a second outage.
        c.say(f"vip-failover: power on {holder}, wait until it rejoins")
        result.marks.append(probe.now())
        t0 = time.monotonic()
        await c.power_on(holder)
        await c.healthy()
        result.details["rejoin_seconds"] = round(time.monotonic() - t0, 1)
        await _observe(probe, 5)
        result.details["holder_end"] = await c.vip_holder()
    finally:
        samples = probe.stop()
    summarise(result, samples)
    return result


async def etcd_member_stop(c: Cluster, target: ProbeTarget) -> ScenarioResult:
    result = ScenarioResult("etcd-member-stop", True, 0.0, 2.0)
    t = c.up()
    r = await t.run(
        gates.etcdctl("endpoint", "status", "--cluster", "-w", "json"), step="etcd status"
    )
    leader_ep = parse_leader(r.stdout)
    by_url = {f"https://{m.address}:2379": m.name for m in c.site.etcd_members}
    victim = by_url.get(leader_ep or "", c.site.etcd_members[-1].name)
    result.details["stopped"] = victim
    result.details["was_leader"] = leader_ep is not None and victim == by_url.get(leader_ep)
    probe = Probe(target)
    probe.start()
    try:
        await _observe(probe, 3)
        c.say(f"etcd-member-stop: stop etcd on {victim}")
        result.marks.append(probe.now())
        await c.transports[victim].run(["systemctl", "stop", "etcd"], step="stop etcd (chaos)")
        await _observe(probe, 10)
        c.say(f"etcd-member-stop: start etcd on {victim}")
        result.marks.append(probe.now())
        await c.transports[victim].run(
            ["systemctl", "start", "etcd"], step="start etcd", timeout=120
        )
        await _observe(probe, 5)
    finally:
        samples = probe.stop()
    summarise(result, samples, measure="total")
    asker = c.up(exclude=[victim])
    caught_up = False
    for _ in range(30):
        r = await asker.run(
            gates.etcdctl("endpoint", "status", "--cluster", "-w", "json"),
            step="etcd status",
            check=False,
        )
        if r.ok:
            revs = revisions(r.stdout)
            result.details["revisions"] = revs
            if len(revs) == len(c.site.etcd_members) and len(set(revs.values())) == 1:
                caught_up = True
                break
        await asyncio.sleep(1)
    result.details["rejoined"] = caught_up
    result.passed = result.passed and caught_up
    return result


async def restore_scenario(c: Cluster, target: ProbeTarget) -> ScenarioResult:
    result = ScenarioResult("restore", True, 0.0, 180.0)
    t = c.up()
    before, after = "kubeprem-chaos-before", "kubeprem-chaos-after"
    for ns in (before, after):
        await t.run(
            gates.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=true"),
            step="clean up",
            timeout=120,
        )
    await t.run(gates.kubectl("create", "namespace", before), step="create namespace")
    await t.run(
        gates.kubectl("-n", before, "create", "configmap", "keep", "--from-literal=k=v"),
        step="create configmap",
    )
    c.say("restore: backup")
    taken = await backup.take_backup(c.loaded, c.transports, datetime.now(UTC), say=c.say)
    result.details["backup"] = str(taken.folder)
    await t.run(gates.kubectl("create", "namespace", after), step="create namespace after")
    await t.run(
        gates.kubectl("delete", "namespace", before, "--wait=true"),
        step="delete namespace",
        timeout=120,
    )
    probe = Probe(target)
    probe.start()
    try:
        await _observe(probe, 2)
        c.say("restore: restore from the backup")
        result.marks.append(probe.now())
        report = await restore.restore(
            c.loaded, c.transports, taken.snapshot, datetime.now(UTC), say=c.say
        )
        result.marks.append(probe.now())
        result.details["restore_seconds"] = round(report.seconds, 1)
        await _observe(probe, 3)
    finally:
        samples = probe.stop()
    summarise(result, samples)
    back = await t.run(
        gates.kubectl("-n", before, "get", "configmap", "keep", "-o", "json"),
        step="check",
        check=False,
    )
    gone = await t.run(gates.kubectl("get", "namespace", after), step="check", check=False)
    result.details["before_back"] = back.ok
    result.details["after_gone"] = not gone.ok
    result.passed = result.passed and back.ok and not gone.ok
    await t.run(
        gates.kubectl("delete", "namespace", before, "--ignore-not-found", "--wait=false"),
        step="clean up",
        check=False,
    )
    return result


# -- a stateful app's primary machine powered off ----------------------------------

# seconds until writes through the primary Service succeed again (issue goals)
APP_GOALS: Mapping[str, float] = {"redis": 10.0, "postgresql": 30.0}
APP_WRITE_SECONDS = 45


def app_samples(run: Any) -> tuple[list[Sample], list[float]]:
    """A failover run's writes as probe samples (seconds since its client
    started, ok) and its fault as a mark, for the same timeline and table."""
    log = run.log
    writes = [] if log is None else list(log.writes)
    samples = [Sample((w.t_ms - run.start_ms) / 1000, w.ok, 0.0, w.detail) for w in writes]
    return samples, [(run.fault_ms - run.start_ms) / 1000]


def app_verdict(run: Any, goal: float) -> tuple[bool, float, dict[str, Any]]:
    """(passed, outage seconds, details): every acknowledged write read back,
    writes through the primary Service back within ``goal`` seconds, and a
    different pod is primary afterwards."""
    log, m = run.log, run.result
    acked = None if log is None else log.acked
    lost = [] if log is None else list(log.lost)
    outage = None if m is None else m.outage
    moved = run.primary_after is not None and run.primary_after.pod != run.primary_before.pod
    details = {
        "primary_before": f"{run.primary_before.pod} on {run.primary_before.node}",
        "primary_after": (
            f"{run.primary_after.pod} on {run.primary_after.node}" if run.primary_after else None
        ),
        "acknowledged": acked,
        "lost": lost[:20],
        "failed_writes": None if m is None else m.failed,
    }
    passed = bool(acked) and not lost and outage is not None and outage <= goal and moved
    return passed, (float("inf") if outage is None else outage), details


def pods_on(pods: Sequence[Mapping[str, Any]], node: str) -> list[str]:
    """Names of the pods scheduled on ``node``, sorted."""
    return sorted(
        str(p["metadata"]["name"]) for p in pods if (p.get("spec") or {}).get("nodeName") == node
    )


def deployed_apps(api: Any) -> list[str]:
    """The failover apps with a StatefulSet in their namespace."""
    from kubeprem.workflows import failover as fo

    return [a for a in APP_GOALS if api.list("StatefulSet", fo.TARGETS[a].namespace)]  # type: ignore[index]


def _all_ready(api: Any, namespace: str) -> bool:
    sets = api.list("StatefulSet", namespace)
    return bool(sets) and all(
        int((x.get("status") or {}).get("readyReplicas") or 0)
        == int((x.get("spec") or {}).get("replicas") or 0)
        for x in sets
    )


def app_primary_poweroff(app: str) -> Scenario:
    """Power off the lab machine that runs ``app``'s primary while a client
    pod on another machine writes through the primary Service, each write
    acknowledged only once replicated (kubeprem.workflows.failover); then
    power it on and wait until every pod of the app is ready again."""

    async def scenario(c: Cluster, target: ProbeTarget) -> ScenarioResult:
        from kubeprem.images.builder import image_refs
        from kubeprem.kube.http import HttpKubeAPI
        from kubeprem.pki.store import KUBECONFIG_DIR
        from kubeprem.workflows import failover as fo

        name = f"{app}-primary-poweroff"
        goal = APP_GOALS[app]
        if not c.lab:
            raise OperationError(
                f"{name}: powering a worker off and on again needs the lab (a real machine "
                "needs out-of-band power control); use bench/failover.py against a lab"
            )
        api = HttpKubeAPI.from_kubeconfig(pki_dir(c.loaded) / KUBECONFIG_DIR / "admin.conf")
        spec = fo.TARGETS[app]  # type: ignore[index]
        if not api.list("StatefulSet", spec.namespace):
            raise OperationError(f"{name}: {app} is not deployed (kubeprem app deploy {app})")
        loop = asyncio.get_running_loop()

        def ask(pod: str) -> str:
            argv = gates.kubectl("exec", "-n", spec.namespace, pod, "--", *fo.REDIS_ASK)
            run = asyncio.run_coroutine_threadsafe(
                c.up().run(argv, step=f"ask {pod} for the primary", timeout=30), loop
            )
            return run.result(timeout=60).stdout

        def find() -> Any:
            if app == "redis":
                return fo.redis_primary(api, ask, spec.namespace)
            return fo.postgresql_primary(api, spec.namespace)

        # what else of the app goes down with the machine (a proxy there
        # costs more than the primary alone): part of the result, listed when
        # the primary is found (once, before the client starts), not in
        # inject, where the API call would count in the measured outage
        casualties: list[str] = []

        def find_and_list() -> Any:
            p = find()
            casualties[:] = pods_on(api.list("Pod", spec.namespace), p.node)
            return p

        def inject(p: Any) -> None:
            c.say(f"{name}: power off {p.node} (runs {', '.join(casualties) or p.pod})")
            lab_machines.poweroff(c.loaded, p.node)

        run = await asyncio.to_thread(
            fo.run_failover,
            api,
            spec,
            image_refs(c.site)[spec.image_key],
            fault="poweroff",
            find_primary=find_and_list,
            inject=inject,
            duration=APP_WRITE_SECONDS,
            goal_s=goal,
            say=c.say,
        )
        node = run.primary_before.node
        c.say(f"{name}: power on {node}, wait until every {app} pod is ready")
        await c.power_on(node)
        deadline = time.monotonic() + 600
        while not await asyncio.to_thread(_all_ready, api, spec.namespace):
            if time.monotonic() > deadline:
                raise OperationError(
                    f"{name}: {app}'s pods not all ready 600 s after {node} came back"
                )
            await asyncio.sleep(3)
        passed, outage, details = app_verdict(run, goal)
        details["pods_on_that_machine"] = casualties
        samples, marks = app_samples(run)
        result = ScenarioResult(name, passed, outage, goal, details=details, marks=marks)
        result.samples = samples
        result.probes = len(samples)
        result.failures = sum(1 for x in samples if not x.ok)
        result.failed_seconds = total(outages(samples))
        result.duration = samples[-1].t if samples else 0.0
        return result

    return scenario


SCENARIOS: Mapping[str, Scenario] = {
    "vip-failover": vip_failover,
    "etcd-member-stop": etcd_member_stop,
    "restore": restore_scenario,
    "redis-primary-poweroff": app_primary_poweroff("redis"),
    "postgresql-primary-poweroff": app_primary_poweroff("postgresql"),
}
# what `verify --chaos` runs without --scenario: the cluster's own, then one
# per app found deployed
CLUSTER_SCENARIOS = ("vip-failover", "etcd-member-stop", "restore")


async def run_scenarios(
    loaded: LoadedSite,
    names: Sequence[str],
    out_dir: Path,
    *,
    say: Say,
) -> list[ScenarioResult]:
    """Run ``names`` in order; each result gets its PNG timeline in ``out_dir``."""
    from kubeprem.report.timeline import write_timeline

    target = ProbeTarget.of(loaded)
    c = Cluster(loaded, say)
    results: list[ScenarioResult] = []
    try:
        await c.healthy(timeout=60)
        if not names:
            names = list(CLUSTER_SCENARIOS)
            if c.lab:
                from kubeprem.kube.http import HttpKubeAPI
                from kubeprem.pki.store import KUBECONFIG_DIR

                api = HttpKubeAPI.from_kubeconfig(pki_dir(loaded) / KUBECONFIG_DIR / "admin.conf")
                apps = await asyncio.to_thread(deployed_apps, api)
                names += [f"{a}-primary-poweroff" for a in apps]
        for name in names:
            scenario = SCENARIOS[name]
            try:
                r = await scenario(c, target)
            except OperationError as exc:
                r = ScenarioResult(name, False, 0.0, 0.0, error=str(exc))
            if r.samples:
                png = write_timeline(
                    out_dir / f"{name}.png",
                    [(s.t, s.ok) for s in r.samples],
                    r.duration,
                    r.marks,
                )
                r.timeline = str(png)
            results.append(r)
            say(
                f"{name}: {'passed' if r.passed else 'FAILED'}, outage {r.outage_seconds:.2f} s "
                f"(goal {r.goal_seconds:.0f} s)"
            )
    finally:
        await c.close()
    return results

"""Failover of the stateful apps, measured from inside the cluster.

Called by bench/failover.py and the lab test (tests/lab/test_stateful_lab.py);
the chaos command can reuse ``run_failover`` with its own fault.

A client pod (the app's own image: redis-cli or psql) writes numbered
records through the app's primary Service in a loop and logs one line per
write: ``W <seq> <epoch ms> ok|fail <detail>``. A write counts as
acknowledged only once it is replicated:

- Redis: ``SET`` then ``WAIT 1 1000`` on the same connection, acknowledged
  when WAIT answers 1 or more (a replica has it);
- PostgreSQL: one ``INSERT`` committed with ``synchronous_commit = on``
  under Patroni's ``synchronous_mode`` (a synchronous standby has it).

The run ends after ``DURATION`` seconds, ``MAX_WRITES`` writes, or as soon
as the file /tmp/stop exists in the pod (a client of unknown length, such as
the one writing through an upgrade, is stopped so). After its run the pod
reads every acknowledged record back through the same
Service and logs ``LOST <seq>`` for each one missing and a ``VERIFY`` total.
The pod never runs on the machine that fails. Timestamps come from the pod
and the operator's machine: in the lab they share one kernel clock.

``parse_log`` and ``measure`` are pure; ``run_failover`` does the I/O through
a ``LogsAPI`` (the Kubernetes API plus pod logs) and callables for finding
the primary and for the fault, so the same steps serve pod deletion and a
machine's power-off.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kubeprem.apps import base as b
from kubeprem.errors import OperationError
from kubeprem.kube.api import KubeAPI, Obj

App = Literal["redis", "postgresql"]
CLIENT = "failover-client"
TABLE = "kubeprem_failover"

REDIS_WRITER = r"""
export REDISCLI_AUTH="$(cat /etc/auth/password)"
now() { date +%s%3N; }
: >/tmp/acked
end=$(( $(now) + DURATION * 1000 ))
i=0
while [ "$i" -lt "$MAX_WRITES" ] && [ "$(now)" -lt "$end" ] && [ ! -e /tmp/stop ]; do
  i=$((i + 1))
  t=$(now)
  out="$(printf 'SET %s:%s %s\nWAIT 1 1000\n' "$PREFIX" "$i" "$i" |
    timeout 3 redis-cli --no-auth-warning -h "$TARGET" -p 6379 2>&1 | tr '\n' ' ')"
  set -- $out
  if [ "${1:-}" = OK ] && [ "${2:-0}" -ge 1 ] 2>/dev/null; then
    echo "$i" >>/tmp/acked
    echo "W $i $t ok"
  else
    echo "W $i $t fail ${out:-no answer}" | cut -c1-200
    sleep 0.1
  fi
  sleep "$PAUSE"
done
echo "DONE $(now)"
n=0
until [ "$n" -ge 30 ]; do
  if timeout 3 redis-cli --no-auth-warning -h "$TARGET" ping 2>/dev/null | grep -q PONG; then break; fi
  n=$((n + 1)); sleep 1
done
sed "s/^/GET $PREFIX:/" /tmp/acked | timeout 60 redis-cli --no-auth-warning -h "$TARGET" -p 6379 \
  >/tmp/read 2>&1 || true
paste -d ' ' /tmp/acked /tmp/read | while read -r k v; do
  [ "$k" = "$v" ] || echo "LOST $k"
done >/tmp/lost
cat /tmp/lost
echo "VERIFY acked=$(wc -l </tmp/acked) lost=$(wc -l </tmp/lost) $(now)"
"""

PG_WRITER = r"""
export PGPASSWORD="$(cat /etc/auth/superuser-password)" PGCONNECT_TIMEOUT=2
export PGHOST="$TARGET" PGUSER=postgres PGDATABASE=postgres
now() { date +%s%3N; }
q() { timeout 4 psql -X -q -At -v ON_ERROR_STOP=1 -c "$1" 2>&1 | tr '\n' ' '; }
n=0
until q "CREATE TABLE IF NOT EXISTS $TABLE (run text, seq int, PRIMARY KEY (run, seq))" |
    grep -qv ERROR || [ "$n" -ge 60 ]; do
  n=$((n + 1)); sleep 1
done
: >/tmp/acked
end=$(( $(now) + DURATION * 1000 ))
i=0
while [ "$i" -lt "$MAX_WRITES" ] && [ "$(now)" -lt "$end" ] && [ ! -e /tmp/stop ]; do
  i=$((i + 1))
  t=$(now)
  if out="$(timeout 4 psql -X -q -At -v ON_ERROR_STOP=1 \
      -c "SET synchronous_commit = on" \
      -c "INSERT INTO $TABLE VALUES ('$PREFIX', $i)" 2>&1)"; then
    echo "$i" >>/tmp/acked
    echo "W $i $t ok"
  else
    echo "W $i $t fail $(echo "${out:-no answer}" | tr '\n' ' ')" | cut -c1-200
    sleep 0.1
  fi
  sleep "$PAUSE"
done
echo "DONE $(now)"
n=0
until q "SELECT 1" | grep -qx 1 || [ "$n" -ge 30 ]; do n=$((n + 1)); sleep 1; done
timeout 30 psql -X -At -c "SELECT seq FROM $TABLE WHERE run = '$PREFIX'" 2>/dev/null |
  sort >/tmp/present || true
sort /tmp/acked | comm -23 - /tmp/present | sed 's/^/LOST /' >/tmp/lost
cat /tmp/lost
echo "VERIFY acked=$(wc -l </tmp/acked) lost=$(wc -l </tmp/lost) $(now)"
"""


@dataclass(frozen=True)
class AppTarget:
    """What the client needs to know about one app."""

    app: App
    namespace: str
    service: str  # the primary Service
    image_key: str  # catalogue name of the client's image
    secret: str
    script: str


TARGETS: Mapping[App, AppTarget] = {
    "redis": AppTarget("redis", "redis", "redis", "redis", "redis-auth", REDIS_WRITER),
    "postgresql": AppTarget(
        "postgresql", "postgresql", "postgresql", "postgresql", "postgresql-auth", PG_WRITER
    ),
}


def client_pod(
    target: AppTarget,
    image: str,
    *,
    name: str,
    prefix: str,
    duration: int,
    max_writes: int,
    pause: float,
    avoid_nodes: Sequence[str] = (),
    namespace: str | None = None,
) -> Obj:
    """The writer pod: one run of ``duration`` seconds (at most ``max_writes``),
    then the read-back. Never scheduled on ``avoid_nodes``."""
    ns = namespace or target.namespace
    spec: Obj = {
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": "writer",
                "image": image,
                "imagePullPolicy": b.PULL,
                "command": ["sh", "-c", target.script],
                "env": [
                    b.env("TARGET", f"{target.service}.{target.namespace}.svc"),
                    b.env("PREFIX", prefix),
                    b.env("TABLE", TABLE),
                    b.env("DURATION", str(duration)),
                    b.env("MAX_WRITES", str(max_writes)),
                    b.env("PAUSE", f"{pause:g}"),
                ],
                "resources": {
                    "requests": {"cpu": "50m", "memory": "32Mi"},
                    "limits": {"memory": "128Mi"},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "auth", "mountPath": "/etc/auth", "readOnly": True}],
            }
        ],
        "enableServiceLinks": False,
        "restartPolicy": "Never",
        # the Secret's files are 0400, group-readable through fsGroup only
        "securityContext": {"fsGroup": b.FS_GROUP, "runAsNonRoot": True},
        "terminationGracePeriodSeconds": 1,
        "volumes": [b.volume_secret("auth", target.secret)],
    }
    if avoid_nodes:
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "NotIn",
                                    "values": list(avoid_nodes),
                                }
                            ]
                        }
                    ]
                }
            }
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": b.meta(
            name,
            ns,
            b.labels("kubeprem-bench", CLIENT),
            {
                "kubeprem.io/accept": "KP022, KP023: a one-shot writer that serves no "
                "traffic and ends with its run (restartPolicy Never)"
            },
        ),
        "spec": spec,
    }


def client_daemonset(
    target: AppTarget,
    image: str,
    *,
    name: str,
    node: str,
    pause: float,
    max_writes: int = 1_000_000,
    duration: int = 86_400,
) -> Obj:
    """The writer as a DaemonSet of one pod pinned to ``node``, for a run of
    unknown length: a drain skips DaemonSet pods, so it keeps writing through
    an upgrade that drains every worker in turn. It writes until /tmp/stop
    appears, reads back, then sleeps (a DaemonSet's pod is never done)."""
    pod = client_pod(
        target,
        image,
        name=name,
        prefix=name,
        duration=duration,
        max_writes=max_writes,
        pause=pause,
    )
    spec = pod["spec"]
    spec["containers"][0]["command"] = ["sh", "-c", target.script + "exec sleep infinity\n"]
    spec["restartPolicy"] = "Always"
    spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    labels = dict(pod["metadata"]["labels"]) | {"app.kubernetes.io/instance": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": pod["metadata"] | {"labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/instance": name}},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


# -- reading what the client saw (pure) ------------------------------------------


@dataclass(frozen=True)
class Write:
    seq: int
    t_ms: int
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class ClientLog:
    writes: tuple[Write, ...]
    done_ms: int | None
    acked: int | None  # from VERIFY; None when the pod never got there
    lost: tuple[int, ...]
    verified_ms: int | None


def parse_log(text: str) -> ClientLog:
    writes, lost = [], []
    done = verified = acked = None
    for line in text.splitlines():
        parts = line.split(maxsplit=4)
        if len(parts) >= 4 and parts[0] == "W" and parts[1].isdigit() and parts[2].isdigit():
            writes.append(
                Write(int(parts[1]), int(parts[2]), parts[3] == "ok", " ".join(parts[4:]))
            )
        elif len(parts) == 2 and parts[0] == "DONE" and parts[1].isdigit():
            done = int(parts[1])
        elif len(parts) == 2 and parts[0] == "LOST" and parts[1].isdigit():
            lost.append(int(parts[1]))
        elif parts and parts[0] == "VERIFY":
            kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            acked = int(kv.get("acked", "0"))
            verified = int(parts[-1]) if parts[-1].isdigit() else None
    return ClientLog(tuple(writes), done, acked, tuple(lost), verified)


@dataclass(frozen=True)
class Measure:
    """Seconds from the fault: ``first_ok`` is when a write was acknowledged
    again, ``stable`` when the last failed write after the fault began (None:
    none failed). ``outage`` = first_ok when writes failed, else 0."""

    first_fail: float | None
    first_ok: float | None
    last_fail: float | None
    failed: int
    outage: float | None


def measure(writes: Sequence[Write], fault_ms: int) -> Measure:
    after = [w for w in writes if w.t_ms >= fault_ms]
    fails = [w for w in after if not w.ok]
    if not fails:
        ok = next((w for w in after if w.ok), None)
        return Measure(None, None if ok is None else 0.0, None, 0, 0.0 if ok else None)
    first_fail = fails[0]
    ok_after = next((w for w in after if w.ok and w.t_ms > first_fail.t_ms), None)
    first_ok = None if ok_after is None else (ok_after.t_ms - fault_ms) / 1000
    return Measure(
        (first_fail.t_ms - fault_ms) / 1000,
        first_ok,
        (fails[-1].t_ms - fault_ms) / 1000,
        len(fails),
        first_ok,
    )


def longest_gap(writes: Sequence[Write]) -> tuple[float, int | None]:
    """The longest time in seconds without an acknowledged write, between
    two acknowledged writes, and the epoch ms it began (None: fewer than two
    acknowledged). A client's outage when its faults are not one instant."""
    acked = [w.t_ms for w in writes if w.ok]
    best, at = 0.0, None
    for a, b2 in itertools.pairwise(acked):
        if (b2 - a) / 1000 > best:
            best, at = (b2 - a) / 1000, a
    return best, at


# -- running one scenario (I/O) ---------------------------------------------------


class LogsAPI(KubeAPI, Protocol):
    def logs(self, name: str, namespace: str, container: str | None = None) -> str: ...


@dataclass(frozen=True)
class Primary:
    pod: str
    node: str


@dataclass
class Run:
    app: str
    fault: str
    primary_before: Primary
    primary_after: Primary | None = None
    fault_ms: int = 0
    start_ms: int = 0
    log: ClientLog | None = None
    result: Measure | None = None
    events: list[tuple[int, str]] = field(default_factory=list)
    goal_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        log = self.log or ClientLog((), None, None, (), None)
        m = self.result
        return {
            "app": self.app,
            "fault": self.fault,
            "goal_s": self.goal_s,
            "primary_before": self.primary_before.__dict__,
            "primary_after": self.primary_after.__dict__ if self.primary_after else None,
            "fault_t": (self.fault_ms - self.start_ms) / 1000,
            "outage_s": None if m is None else m.outage,
            "last_failure_s": None if m is None else m.last_fail,
            "failed_writes": None if m is None else m.failed,
            "writes": len(log.writes),
            "acknowledged": log.acked,
            "lost": list(log.lost),
            "events": [{"t": (t - self.start_ms) / 1000, "event": e} for t, e in self.events],
            "timeline": [
                {"t": (w.t_ms - self.start_ms) / 1000, "seq": w.seq, "ok": w.ok}
                | ({"detail": w.detail} if w.detail else {})
                for w in log.writes
            ],
        }


def redis_primary(api: KubeAPI, ask: Callable[[str], str], namespace: str = "redis") -> Primary:
    """The pod the Sentinels name as primary. ``ask(sentinel_pod)`` runs
    ``sentinel get-master-addr-by-name`` there (kubectl exec) and returns its output."""
    errors = []
    for pod in api.list("Pod", namespace, "app.kubernetes.io/component=sentinel"):
        name = pod["metadata"]["name"]
        try:
            host = ask(name).split()[0]
        except (OperationError, IndexError) as exc:
            errors.append(f"{name}: {exc}")
            continue
        primary = host.split(".")[0]
        live = api.get("Pod", primary, namespace)
        if live is not None:
            return Primary(primary, str((live.get("spec") or {}).get("nodeName", "")))
        errors.append(f"{name} names {host}, no such pod")
    raise OperationError("redis: no Sentinel named a primary: " + "; ".join(errors or ["none"]))


REDIS_ASK = (
    "sh",
    "-c",
    'REDISCLI_AUTH="$(cat /etc/redis-auth/password)" redis-cli --no-auth-warning -p 26379 '
    "sentinel get-master-addr-by-name mymaster",
)


def postgresql_primary(api: KubeAPI, namespace: str = "postgresql") -> Primary:
    """The pod Patroni labelled ``role=master`` whose IP the leader Endpoints hold."""
    ep = api.get("Endpoints", "postgresql", namespace) or {}
    ips = {a.get("ip") for s in ep.get("subsets") or [] for a in s.get("addresses") or []}
    for pod in api.list("Pod", namespace, "app.kubernetes.io/component=database,role=master"):
        if (pod.get("status") or {}).get("podIP") in ips:
            return Primary(pod["metadata"]["name"], str(pod["spec"].get("nodeName", "")))
    raise OperationError(f"postgresql: no leader (Endpoints hold {sorted(map(str, ips))})")


def now_ms() -> int:
    return int(time.time() * 1000)


def _wait(
    what: str, check: Callable[[], bool], timeout: float, sleep: Callable[[float], None]
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise OperationError(f"failover: {what} not seen after {timeout:.0f} s")
        sleep(0.5)


def run_failover(
    api: LogsAPI,
    target: AppTarget,
    image: str,
    *,
    fault: str,
    find_primary: Callable[[], Primary],
    inject: Callable[[Primary], None],
    duration: int = 60,
    max_writes: int = 2000,
    pause: float = 0.05,
    warmup_writes: int = 20,
    goal_s: float = 0.0,
    say: Callable[[str], None] = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
) -> Run:
    """One scenario: client started away from the primary's machine, a few
    acknowledged writes, the fault, the rest of the run, the read-back."""
    primary = find_primary()
    name = f"{CLIENT}-{target.app}-{fault}-{now_ms() % 1_000_000}"
    run = Run(target.app, fault, primary, goal_s=goal_s)
    api.delete("Pod", name, target.namespace)
    pod = client_pod(
        target,
        image,
        name=name,
        prefix=name,
        duration=duration,
        max_writes=max_writes,
        pause=pause,
        avoid_nodes=(primary.node,),
    )
    run.start_ms = now_ms()
    api.apply(pod)
    run.events.append((now_ms(), f"client {name} started"))
    say(f"{target.app}/{fault}: primary {primary.pod} on {primary.node}; client {name}")

    def acked_writes() -> int:
        try:
            return sum(1 for w in parse_log(api.logs(name, target.namespace)).writes if w.ok)
        except OperationError:
            return 0

    _wait(
        f"{warmup_writes} acknowledged writes", lambda: acked_writes() >= warmup_writes, 120, sleep
    )
    run.fault_ms = now_ms()
    run.events.append((run.fault_ms, f"{fault}: {primary.pod} on {primary.node}"))
    say(f"{target.app}/{fault}: fault injected")
    inject(primary)

    def finished() -> bool:
        live = api.get("Pod", name, target.namespace) or {}
        return (live.get("status") or {}).get("phase") in ("Succeeded", "Failed")

    _wait(f"client {name} finishing", finished, duration + 240, sleep)
    for attempt in range(5):
        try:
            run.log = parse_log(api.logs(name, target.namespace))
            break
        except OperationError:
            if attempt == 4:
                raise
            sleep(2)
    assert run.log is not None
    run.result = measure(run.log.writes, run.fault_ms)
    if run.log.done_ms:
        run.events.append((run.log.done_ms, "writes end, read-back"))
    if run.log.verified_ms:
        run.events.append((run.log.verified_ms, f"read-back: {len(run.log.lost)} lost"))
    try:
        run.primary_after = find_primary()
    except OperationError:
        run.primary_after = None
    api.delete("Pod", name, target.namespace)
    return run


# -- a writer through a longer operation (I/O) -----------------------------------


@dataclass
class Writer:
    """A client DaemonSet writing through an operation of unknown length
    (an upgrade), started by ``start_writer`` and ended by ``stop_writer``."""

    app: str
    name: str  # the DaemonSet's
    namespace: str
    node: str
    pod: str
    start_ms: int


@dataclass(frozen=True)
class WriterResult:
    app: str
    node: str
    restarts: int  # of the writer's container: a restart begins a new run
    log: ClientLog
    longest_gap_s: float
    longest_gap_at_s: float | None  # since the writer started

    @property
    def failed(self) -> int:
        return sum(1 for w in self.log.writes if not w.ok)

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "writer_node": self.node,
            "writer_restarts": self.restarts,
            "writes": len(self.log.writes),
            "acknowledged": self.log.acked,
            "failed_writes": self.failed,
            "lost": list(self.log.lost),
            "longest_gap_s": round(self.longest_gap_s, 2),
            "longest_gap_at_s": self.longest_gap_at_s,
        }


def _restarts(pod: Obj | None) -> int:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses)


def start_writer(
    api: LogsAPI,
    target: AppTarget,
    image: str,
    *,
    node: str,
    warmup_writes: int = 20,
    pause: float = 0.1,
    timeout: float = 180,
    sleep: Callable[[float], None] = time.sleep,
) -> Writer:
    """The writer DaemonSet on ``node``, returned once it has
    ``warmup_writes`` acknowledged writes."""
    name = f"{CLIENT}-{target.app}-{now_ms() % 1_000_000}"
    api.apply(client_daemonset(target, image, name=name, node=node, pause=pause))
    start = now_ms()
    pods: list[str] = []

    def running() -> bool:
        pods[:] = [
            str(p["metadata"]["name"])
            for p in api.list("Pod", target.namespace)
            if (p["metadata"].get("labels") or {}).get("app.kubernetes.io/instance") == name
            and (p.get("status") or {}).get("phase") == "Running"
        ]
        return bool(pods)

    _wait(f"writer {name} running", running, timeout, sleep)

    def acked() -> bool:
        try:
            log = parse_log(api.logs(pods[0], target.namespace))
        except OperationError:
            return False
        return sum(1 for w in log.writes if w.ok) >= warmup_writes

    _wait(f"{warmup_writes} acknowledged writes of {name}", acked, timeout, sleep)
    return Writer(target.app, name, target.namespace, node, pods[0], start)


def stop_writer(
    api: LogsAPI,
    writer: Writer,
    touch_stop: Callable[[Writer], None],
    *,
    timeout: float = 300,
    sleep: Callable[[float], None] = time.sleep,
) -> WriterResult:
    """Tell the writer to stop (``touch_stop`` creates /tmp/stop in its pod,
    through exec), wait for its read-back, remove it; what it saw."""
    touch_stop(writer)
    logs: list[ClientLog] = []

    def verified() -> bool:
        try:
            logs[:] = [parse_log(api.logs(writer.pod, writer.namespace))]
        except OperationError:
            return False
        return logs[0].acked is not None

    _wait(f"the read-back of {writer.name}", verified, timeout, sleep)
    restarts = _restarts(api.get("Pod", writer.pod, writer.namespace))
    api.delete("DaemonSet", writer.name, writer.namespace)
    gap, at = longest_gap(logs[0].writes)
    return WriterResult(
        writer.app,
        writer.node,
        restarts,
        logs[0],
        gap,
        None if at is None else round((at - writer.start_ms) / 1000, 1),
    )


__all__ = [
    "REDIS_ASK",
    "TARGETS",
    "AppTarget",
    "ClientLog",
    "LogsAPI",
    "Measure",
    "Primary",
    "Run",
    "Write",
    "Writer",
    "WriterResult",
    "client_daemonset",
    "client_pod",
    "longest_gap",
    "measure",
    "parse_log",
    "postgresql_primary",
    "redis_primary",
    "run_failover",
    "start_writer",
    "stop_writer",
]

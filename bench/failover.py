"""Failover of Redis and PostgreSQL on a lab cluster, measured from inside it.

Usage (the lab up and applied, `kubeprem storage` and both apps deployed):

    .venv/bin/python bench/failover.py SITE [--apps redis postgresql]
        [--faults delete poweroff] [--duration 60] [--out bench/results/failover.json]

For each app and fault, a client pod writes records through the primary
Service, each acknowledged only once replicated (see
kubeprem.workflows.failover), the primary's pod is deleted or the lab machine
it runs on powered off (and started again afterwards), and the client reads
every acknowledged record back. Writes bench/results/failover.json (the
timeline of every run: t, ok/fail per write, events, the numbers) and one PNG
per run beside it (kubeprem.report.timeline: time on x, green = writes
acknowledged, red = failed, blue = events). Goals (issue 5): Redis back
within 10 s, PostgreSQL within 30 s, no acknowledged write lost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubeprem.cli.main import main as cli_main
from kubeprem.images import image_refs
from kubeprem.kube.http import HttpKubeAPI
from kubeprem.kube.kubectl import kubectl_exec
from kubeprem.lab import machines
from kubeprem.pki.store import KUBECONFIG_DIR, pki_dir
from kubeprem.report.timeline import write_timeline
from kubeprem.site import LoadedSite, load_site
from kubeprem.workflows import failover as fo
from kubeprem.workflows.chaos import pods_on

GOALS = {"redis": 10.0, "postgresql": 30.0}
PARTIAL = Path("/tmp/kubeprem-failover-last-run.json")  # a run, kept before recovery


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def machine_facts() -> dict[str, Any]:
    mem = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    return {"nproc": os.cpu_count(), "memory_mib": mem, "loadavg": list(os.getloadavg())}


def wait_ready(api: HttpKubeAPI, namespace: str, pods: int, timeout: float = 420) -> float:
    """Until ``pods`` pods of the namespace's StatefulSets are ready again."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        ready = 0
        for sts in api.list("StatefulSet", namespace):
            ready += int((sts.get("status") or {}).get("readyReplicas") or 0)
        if ready >= pods:
            return time.monotonic() - start
        time.sleep(3)
    raise SystemExit(f"{namespace}: {pods} pods not ready again after {timeout:.0f} s")


def node_ready(api: HttpKubeAPI, name: str, timeout: float = 300) -> bool:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        node = api.get("Node", name) or {}
        conds = {
            c.get("type"): c.get("status")
            for c in (node.get("status") or {}).get("conditions") or []
        }
        if conds.get("Ready") == "True":
            return True
        time.sleep(3)
    return False


def scenario(
    loaded: LoadedSite,
    api: HttpKubeAPI,
    kubeconfig: Path,
    app: str,
    fault: str,
    duration: int,
) -> dict[str, Any]:
    target = fo.TARGETS["redis" if app == "redis" else "postgresql"]
    image = image_refs(loaded.site)[target.image_key]
    find: Callable[[], fo.Primary]
    if app == "redis":

        def find() -> fo.Primary:
            return fo.redis_primary(
                api, lambda pod: kubectl_exec(kubeconfig, "redis", pod, fo.REDIS_ASK)
            )

        pods = 3 + 3  # servers and sentinels
    else:

        def find() -> fo.Primary:
            return fo.postgresql_primary(api)

        pods = 3

    # The app's pods that go down with the machine, listed when the primary
    # is found (run_failover asks once, before the client starts): listing
    # them in inject would add an API call to the measured outage.
    casualties: list[str] = []

    def find_and_list() -> fo.Primary:
        p = find()
        if fault == "poweroff":
            casualties[:] = pods_on(api.list("Pod", target.namespace), p.node)
        return p

    def inject(p: fo.Primary) -> None:
        if fault == "delete":
            api.delete("Pod", p.pod, target.namespace)
        else:
            say(f"{app}/{fault}: powering off {p.node}, which runs {', '.join(casualties)}")
            machines.poweroff(loaded, p.node)

    run = fo.run_failover(
        api,
        target,
        image,
        fault=fault,
        find_primary=find_and_list,
        inject=inject,
        duration=duration,
        goal_s=GOALS[app],
        say=say,
    )
    partial = run.to_json()
    if fault == "poweroff":
        partial["pods_on_that_machine"] = casualties
    PARTIAL.write_text(json.dumps(partial, indent=1) + "\n")
    if fault == "poweroff":
        node = run.primary_before.node
        say(f"starting {node} again")
        t0 = fo.now_ms()
        machines.lab_up(loaded, only=[node])
        run.events.append((t0, f"lab start {node}"))
        if not node_ready(api, node, 120):
            # the lab rebuilds a machine whose cached root filesystem changed while
            # it was off: it comes back empty (docs/operations.md); apply makes it a
            # worker again, storage its volume folders, app deploy the app images
            say(f"{node} came back empty: apply and storage again")
            site = str(loaded.path)
            if cli_main(["apply", site, "--yes"]) != 0:
                cli_main(["apply", site, "--yes"])
            cli_main(["storage", site, "--size", "5Gi", "--count", "4"])
            for name in GOALS:  # app deploy imports the app's images where missing
                cli_main(["app", "deploy", site, name, "--no-wait"])
            run.events.append((fo.now_ms(), f"{node} rebuilt (apply)"))
            node_ready(api, node)
        run.events.append((fo.now_ms(), f"{node} Ready"))
    back = wait_ready(api, target.namespace, pods)
    say(f"{app}: every pod ready again {back:.0f} s later")
    out = run.to_json()
    if fault == "poweroff":
        out["pods_on_that_machine"] = casualties
    m = run.result
    say(
        f"{app}/{fault}: outage {m.outage if m else None} s (goal {GOALS[app]:.0f} s), "
        f"last failed write at {m.last_fail if m else None} s, "
        f"{out['acknowledged']} acknowledged, {len(out['lost'])} lost; "
        f"primary {run.primary_before.pod} -> "
        f"{run.primary_after.pod if run.primary_after else '?'}"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("site")
    ap.add_argument("--apps", nargs="+", default=["redis", "postgresql"], choices=list(GOALS))
    ap.add_argument(
        "--faults", nargs="+", default=["delete", "poweroff"], choices=["delete", "poweroff"]
    )
    ap.add_argument("--duration", type=int, default=60, help="seconds of writes per run")
    ap.add_argument("--out", default="bench/results/failover.json")
    ap.add_argument("--append", action="store_true", help="add to the runs already in --out")
    args = ap.parse_args(argv)
    loaded = load_site(Path(args.site))
    kubeconfig = pki_dir(loaded) / KUBECONFIG_DIR / "admin.conf"
    api = HttpKubeAPI.from_kubeconfig(kubeconfig)
    out = Path(args.out)
    doc: dict[str, Any] = {
        "machine": machine_facts(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": [],
    }
    if args.append and Path(args.out).exists():
        doc["runs"] = json.loads(Path(args.out).read_text())["runs"]
    for app in args.apps:
        for fault in args.faults:
            load = list(os.getloadavg())
            run = {"loadavg_before": load} | scenario(
                loaded, api, kubeconfig, app, fault, args.duration
            )
            doc["runs"].append(run)
            png = out.with_name(f"{out.stem}-{app}-{fault}.png")
            samples = [(w["t"], w["ok"]) for w in run["timeline"]]
            span = max((s[0] for s in samples), default=1.0) + 1
            write_timeline(png, samples, span, [e["t"] for e in run["events"]])
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(doc, indent=1) + "\n")
    bad = [
        f"{r['app']}/{r['fault']}"
        for r in doc["runs"]
        if r["lost"] or r["outage_s"] is None or r["outage_s"] > r["goal_s"]
    ]
    say(f"wrote {out}; {'goals met' if not bad else 'goals missed: ' + ', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""`kubeprem upgrade apply` on a lab cluster, measured from outside and inside.

Usage (needs root; both releases' artifacts are built or taken from the cache
first, outside the measurement):

    .venv/bin/python bench/upgrade.py [--from 1.36.3] [--to 1.37.2]
        [--apps redis postgresql] [--dir DIR] [--keep] [--out bench/results/upgrade.json]

A lab of the `kubeprem init` topology (3 controllers with etcd, HAProxy and
keepalived, 3 workers), with a cluster name and subnet of its own, is brought
up on ``--from``: `lab up`, `apply`, `storage`, and each app deployed. Then,
while the site file is moved to ``--to`` and `kubeprem upgrade apply --yes`
runs:

- a probe writes a ConfigMap through the VIP and reads it back every 100 ms
  (``kubeprem.workflows.chaos.Probe``): failed probes and the longest gap;
- per app, a client writes through the primary Service, each write
  acknowledged only once replicated (``kubeprem.workflows.failover``); it
  runs as a DaemonSet pod pinned to one worker, so the drains (which skip
  DaemonSet pods) leave it writing while its own kubelet is upgraded. Once
  the upgrade is done it is stopped, reads every acknowledged write back:
  acknowledged writes lost (goal 0), failed writes, the longest time without
  an acknowledged write.

Afterwards it checks that every node's kubelet and the API server report
``--to``. Writes bench/results/upgrade.json (appending a record) and a PNG
of the VIP probe's timeline beside it; the lab is removed unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # bench/machine.py

from kubeprem.artifacts.cache import default_cache_dir, set_dir
from kubeprem.images import image_refs
from kubeprem.kube.http import HttpKubeAPI
from kubeprem.kube.kubectl import kubectl_exec
from kubeprem.pki.store import KUBECONFIG_DIR, pki_dir
from kubeprem.report.timeline import write_timeline
from kubeprem.site import example_text, load_site
from kubeprem.workflows import chaos
from kubeprem.workflows import failover as fo

RESULTS = Path(__file__).parent / "results" / "upgrade.json"
KUBEPREM = str(Path(sys.executable).parent / "kubeprem")


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def kubeprem(*args: str, timeout: float = 3600) -> tuple[float, str]:
    """Run a kubeprem command, its output shown as it comes; (seconds, stdout)."""
    say("kubeprem " + " ".join(args))
    start = time.monotonic()
    proc = subprocess.run(
        [KUBEPREM, *args],
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"kubeprem {' '.join(args)} failed ({proc.returncode}) after {elapsed:.0f} s"
        )
    return elapsed, proc.stdout


def write_site(folder: Path, version: str) -> Path:
    """The example topology on a cluster name and subnet of its own, at ``version``."""
    text = example_text()
    name = "kpu-" + secrets.token_hex(3)
    octet = 100 + secrets.randbelow(100)
    text = text.replace("  name: kubeprem ", f"  name: {name} ", 1)
    text = text.replace("10.240.0.", f"10.242.{octet}.")
    text = set_version(text, version)
    folder.mkdir(parents=True, exist_ok=True)
    site = folder / "site.yaml"
    site.write_text(text)
    return site


def set_version(text: str, version: str) -> str:
    new, n = re.subn(
        r'^(\s*kubernetes_version:\s*)"[^"]*"', rf'\g<1>"{version}"', text, count=1, flags=re.M
    )
    if n != 1:
        raise SystemExit("the site file has no quoted kubernetes_version")
    return new


def kubectl_path(version: str) -> str:
    """The kubectl built with ``version``'s binaries (Debian ships none)."""
    folder = set_dir(default_cache_dir(), version)
    found = sorted(folder.glob("**/kubectl"))
    if not found:
        raise SystemExit(f"no kubectl built for {version} under {folder}")
    return str(found[0].parent)


def start_writers(api: HttpKubeAPI, loaded: Any, apps: list[str]) -> list[fo.Writer]:
    refs = image_refs(loaded.site)
    workers = [m.name for m in loaded.site.workers]
    out = []
    for i, app in enumerate(apps):
        target = fo.TARGETS["redis" if app == "redis" else "postgresql"]
        node = workers[(i + 1) % len(workers)]
        w = fo.start_writer(api, target, refs[target.image_key], node=node)
        say(f"{app}: writer {w.pod} on {node}")
        out.append(w)
    return out


def versions(api: HttpKubeAPI, kubeconfig: Path) -> dict[str, str]:
    """Each node's kubelet and the API server behind the VIP, as they report."""
    out = {
        n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"] for n in api.list("Node")
    }
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "version", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    out["kube-apiserver (VIP)"] = json.loads(done.stdout)["serverVersion"]["gitVersion"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="current", default="1.36.3")
    ap.add_argument("--to", dest="target", default="1.37.2")
    ap.add_argument("--apps", nargs="*", default=["redis", "postgresql"], choices=list(fo.TARGETS))
    ap.add_argument("--dir", default=None, help="folder for the site file (default: a new one)")
    ap.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (lab machines)", file=sys.stderr)
        return 2
    folder = Path(args.dir or f"/tmp/kubeprem-bench-upgrade-{secrets.token_hex(3)}")
    site = write_site(folder, args.target)
    kubeprem("artifacts", str(site))  # the target's, outside the measurement
    site.write_text(set_version(site.read_text(), args.current))
    kubeprem("artifacts", str(site))
    os.environ["PATH"] = kubectl_path(args.target) + os.pathsep + os.environ["PATH"]
    record: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe(),
        "from": args.current,
        "to": args.target,
        "apps": args.apps,
    }
    try:
        record["lab_up_s"] = round(kubeprem("lab", "up", str(site))[0], 1)
        record["first_apply_s"] = round(kubeprem("apply", str(site), "--yes")[0], 1)
        if args.apps:
            kubeprem("storage", str(site), "--size", "5Gi", "--count", "4")
            for app in args.apps:
                kubeprem("app", "deploy", str(site), app)
        loaded = load_site(site)
        kubeconfig = pki_dir(loaded) / KUBECONFIG_DIR / "admin.conf"
        api = HttpKubeAPI.from_kubeconfig(kubeconfig)
        record["versions_before"] = versions(api, kubeconfig)
        writers = start_writers(api, loaded, args.apps)
        probe = chaos.Probe(chaos.ProbeTarget.of(loaded))
        probe.start()
        time.sleep(3)
        site.write_text(set_version(site.read_text(), args.target))
        upgrade_start = probe.now()
        try:
            seconds, out = kubeprem("upgrade", "apply", str(site), "--yes", "--json")
        finally:
            upgrade_end = probe.now()
            time.sleep(3)
            samples = probe.stop()
        report = json.loads(out)
        spans = chaos.outages(samples)
        record["upgrade"] = {
            "wall_s": round(seconds, 1),
            "steps": report["steps"],
            "backup": report["backup"] is not None,
        }
        record["vip_probe"] = {
            "probes": len(samples),
            "failed": sum(1 for s in samples if not s.ok),
            "longest_gap_s": round(chaos.longest(spans), 2),
            "failed_seconds": round(chaos.total(spans), 2),
            "errors": sorted({s.error[:120] for s in samples if not s.ok})[:10],
        }
        say(f"VIP probe: {json.dumps(record['vip_probe'])}")
        record["writes"] = {}
        for w in writers:
            result = fo.stop_writer(
                api,
                w,
                lambda w: kubectl_exec(kubeconfig, w.namespace, w.pod, ["touch", "/tmp/stop"]),
            )
            record["writes"][w.app] = result.to_json()
            say(f"{w.app}: {json.dumps(result.to_json())}")
        record["versions_after"] = versions(api, kubeconfig)
        png = Path(args.out).with_suffix(".png")
        write_timeline(
            png,
            [(s.t, s.ok) for s in samples],
            max((s.t for s in samples), default=1.0) + 1,
            [upgrade_start, upgrade_end],
        )
        record["timeline_png"] = png.name
    finally:
        record["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        out_path = Path(args.out)
        doc = json.loads(out_path.read_text()) if out_path.exists() else {"records": []}
        doc["records"].append(record)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(doc, indent=2) + "\n")
        say(f"wrote {out_path}")
        if not args.keep:
            kubeprem("lab", "down", str(site))
    wanted = f"v{args.target}"
    wrong = {k: v for k, v in record.get("versions_after", {}).items() if v != wanted}
    lost = {a: len(r["lost"]) for a, r in record.get("writes", {}).items() if r["lost"]}
    say(
        f"upgrade {args.current} -> {args.target}: wrong versions {wrong or 'none'}, lost {lost or 'none'}"
    )
    return 1 if wrong or lost else 0


if __name__ == "__main__":
    raise SystemExit(main())

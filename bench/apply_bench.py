"""Benchmarks of `kubeprem apply` on the lab (section 7 of the apply issue),
written to bench/results/apply.json with the machine they ran on.

Modes (each appends its record; the site file's lab must be yours):

  first SITE        `lab up` then `apply --yes --json` from bare machines, timed
                    separately (goal: apply < 180 s on 2 cores)
  noop SITE         N re-applies of a converged cluster: seconds, phases, SSH
                    round trips per host (goal: < 5 s)
  add-worker SITE   add worker-N (next address, or --index/--address: a machine
                    never used, after a `node remove`) to the site file,
                    `lab up`, `plan --json` (which hosts change, and what), apply

Every record holds nproc, memory, kernel and the load average at its start
and end: the lab shares this machine with other labs, and the load is part
of the number. Needs root. Usage: .venv/bin/python bench/apply_bench.py MODE SITE
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from lab_up import machine

RESULTS = Path(__file__).parent / "results" / "apply.json"
KUBEPREM = str(Path(sys.executable).parent / "kubeprem")


def run(*args: str, timeout: float = 1800) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    proc = subprocess.run(
        [KUBEPREM, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"kubeprem {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed, proc


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def apply_record(site: str) -> dict[str, Any]:
    wall, proc = run("apply", site, "--yes", "--json")
    doc = json.loads(proc.stdout)
    return {
        "wall_s": round(wall, 2),
        "apply_s": doc["seconds"],
        "changes": doc["changes"],
        "phases": {p["name"]: round(p["seconds"], 2) for p in doc["phases"]},
        "round_trips": doc["round_trips"],
    }


def first(site: str) -> dict[str, Any]:
    up, _ = run("lab", "up", site)
    return {"lab_up_s": round(up, 2), "apply": apply_record(site)}


def noop(site: str, runs: int) -> dict[str, Any]:
    records = [apply_record(site) for _ in range(runs)]
    assert all(r["changes"] == 0 for r in records), "the cluster was not converged"
    return {"runs": records, "best_wall_s": min(r["wall_s"] for r in records)}


def add_worker(site: str, index: int | None = None, address: str | None = None) -> dict[str, Any]:
    path = Path(site)
    text = path.read_text()
    workers = re.findall(r"- name: worker-(\d+)\n\s+address: (\S+)", text)
    if index is None:
        index = max(int(n) for n, _ in workers) + 1
    if address is None:
        last = workers[-1][1].rsplit(".", 1)
        address = f"{last[0]}.{int(last[1]) + 1}"
    anchor = "\nencryption:"
    entry = f"  - name: worker-{index}\n    address: {address}\n    roles: [worker]\n"
    path.write_text(text.replace(anchor, "\n" + entry.rstrip("\n") + "\n" + anchor, 1))
    existing = len(workers)
    up, _ = run("lab", "up", site)
    _, planned = run("plan", site, "--json")
    hosts = json.loads(planned.stdout)["hosts"]
    changes = {
        h: [c.get("path") or c.get("service") or c["action"] for c in cs] for h, cs in hosts.items()
    }
    return {
        "existing_workers": existing,
        "new": f"worker-{index}",
        "lab_up_s": round(up, 2),
        "planned_changes": {h: len(c) for h, c in changes.items()},
        "planned_on_others": {h: c for h, c in changes.items() if h != f"worker-{index}" and c},
        "apply": apply_record(site),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("first", "noop", "add-worker"))
    parser.add_argument("site")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--index", type=int, help="add-worker: N of worker-N (default: next)")
    parser.add_argument("--address", help="add-worker: its address (default: the last one + 1)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (lab machines)", file=sys.stderr)
        return 2
    record: dict[str, Any] = {
        "mode": args.mode,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    if args.mode == "first":
        record["result"] = first(args.site)
    elif args.mode == "noop":
        record["result"] = noop(args.site, max(1, min(args.runs, 10)))
    else:
        record["result"] = add_worker(args.site, args.index, args.address)
    record["loadavg_at_end"] = load()
    doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"records": []}
    doc["records"].append(record)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

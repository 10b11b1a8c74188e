"""Chaos benchmark: `kubeprem verify --chaos` on a lab, N rounds, plus a probe
through the VIP during `certs renew --all` and `encryption rotate`; written to
bench/results/chaos.json with the machine it ran on, and PNG timelines (our
own PNG writer, kubeprem.report.png) to bench/results/chaos-<scenario>.png.

The lab must be yours and already applied. Needs root.
Usage: .venv/bin/python bench/chaos.py SITE [--rounds N] [--no-day2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from lab_up import machine

from kubeprem.site import load_site
from kubeprem.workflows import chaos, verify

RESULTS = Path(__file__).parent / "results"
KUBEPREM = str(Path(sys.executable).parent / "kubeprem")


def probed(site: Path, *command: str) -> dict[str, Any]:
    """Run a kubeprem command while the chaos probe writes through the VIP."""
    loaded = load_site(site)
    probe = chaos.Probe(chaos.ProbeTarget.of(loaded))
    probe.start()
    proc = subprocess.run([KUBEPREM, *command], capture_output=True, text=True, check=False)
    samples = probe.stop()
    spans = chaos.outages(samples)
    return {
        "command": ["kubeprem", *command],
        "exit_status": proc.returncode,
        "seconds": round(samples[-1].t if samples else 0.0, 1),
        "probes": len(samples),
        "failures": sum(1 for s in samples if not s.ok),
        "longest_outage_seconds": round(chaos.longest(spans), 2),
        "failed_seconds": round(chaos.total(spans), 2),
        "failure_spans": [[round(a, 2), round(b, 2)] for a, b in spans],
        "failures_seen": [f"{s.t:.2f} s: {s.error}" for s in samples if not s.ok][:20],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("site", type=Path)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--no-day2", action="store_true", help="skip renew/rotate under probe")
    args = ap.parse_args()
    loaded = load_site(args.site)
    record: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "rounds": [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    for n in range(args.rounds):
        run = asyncio.run(
            verify.run_chaos(
                loaded, list(chaos.SCENARIOS), say=lambda m: print(m, file=sys.stderr, flush=True)
            )
        )
        record["rounds"].append(run.to_list())
        for r in run.results:
            if r.timeline:
                shutil.copy(r.timeline, RESULTS / f"chaos-{r.name}.png")
        print(f"round {n + 1}: {json.dumps(run.to_list())}", file=sys.stderr)
    if not args.no_day2:
        record["certs_renew_all"] = probed(args.site, "certs", "renew", str(args.site), "--all")
        record["encryption_rotate"] = probed(
            args.site, "encryption", "rotate", str(args.site), "--yes"
        )
    record["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()[:2]]
    out = RESULTS / "chaos.json"
    history = json.loads(out.read_text()) if out.exists() else []
    history.append(record)
    out.write_text(json.dumps(history, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of `kubeprem lab up` (6 machines, cached root filesystem, until
every machine accepts SSH) and `kubeprem lab down`, written to
bench/results/lab_up.json with a description of the machine. Goal: up < 60 s.

The root filesystem is built first when absent; that build is timed on its
own (``rootfs_build_s``) and not counted in ``lab up``. The site is the
`kubeprem init` topology with a cluster name and subnet of its own, so a
developer's lab is not touched. Needs root.

Usage: .venv/bin/python bench/lab_up.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from machine import describe  # bench/machine.py

from kubeprem.lab.layout import plan_lab
from kubeprem.lab.machines import lab_root
from kubeprem.lab.rootfs import ensure_rootfs
from kubeprem.site import example_text, load_site

RESULTS = Path(__file__).parent / "results" / "lab_up.json"
KUBEPREM = Path(sys.executable).parent / "kubeprem"


def machine() -> dict[str, Any]:
    return describe()


def timed(*args: str) -> float:
    start = time.monotonic()
    proc = subprocess.run([str(KUBEPREM), *args], capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"kubeprem {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (systemd-nspawn machines, mounts, bridge)", file=sys.stderr)
        return 2
    info = machine()
    with tempfile.TemporaryDirectory(prefix="kubeprem-bench-lab-") as tmp:
        name = "kpb-" + secrets.token_hex(3)
        text = example_text().replace("  name: kubeprem ", f"  name: {name} ", 1)
        text = text.replace("10.240.0.", "10.241.250.")
        site = Path(tmp) / "site.yaml"
        site.write_text(text)
        loaded = load_site(site)
        count = len(loaded.site.machines)

        start = time.monotonic()
        _, built = ensure_rootfs(lab_root())
        rootfs_s = round(time.monotonic() - start, 1) if built else None

        runs = []
        try:
            for i in range(args.runs):
                up = timed("lab", "up", str(site))
                again = timed("lab", "up", str(site))
                down = timed("lab", "down", str(site))
                runs.append(
                    {"up_s": round(up, 2), "up_again_s": round(again, 2), "down_s": round(down, 2)}
                )
                print(f"run {i + 1}: up {up:.1f} s, up again {again:.1f} s, down {down:.1f} s")
        finally:
            subprocess.run([str(KUBEPREM), "lab", "down", str(site)], capture_output=True)
    ups = [r["up_s"] for r in runs]
    result = {
        "benchmark": "lab_up",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machines": count,
        "rootfs": str(plan_lab(loaded.site, lab_root()).rootfs),
        "rootfs_build_s": rootfs_s,
        "goal_up_s": 60,
        "up_s_median": round(statistics.median(ups), 2),
        "up_s_max": max(ups),
        "down_s_median": round(statistics.median(r["down_s"] for r in runs), 2),
        "runs": runs,
        "host": info,
        "note": "up = boot every machine and wait until each accepts SSH with the site key; "
        "up_again = a second `lab up` with every machine running (no-op + SSH checks)",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {RESULTS}: lab up median {result['up_s_median']} s for {count} machines")
    return 0


if __name__ == "__main__":
    sys.exit(main())

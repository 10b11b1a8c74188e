"""Benchmark of the artifact step (`kubeprem artifacts`), written to
bench/results/artifacts.json with a description of the machine.

Measures, for the site's source (default: the `kubeprem init` example, i.e.
Kubernetes 1.37.2 from Go modules):

- ``from_cache``: a complete cached set reused (what every later run pays);
- ``from_cache_verified``: the same with every file re-hashed (``--verify``);
- ``assemble_from_build`` (debian-source only): a new cache whose source tree
  is the existing build: version checks, copies, hashes, manifest;
- ``from_scratch`` (only with ``--from-scratch``, 10+ minutes on 2 cores):
  a new cache and an empty Go build cache: for debian-source apt-get source,
  the full build and Debian's files; for go-modules every pinned module
  downloaded and built. The existing cache is left alone.

Results: bench/results/artifacts.json (debian-source) or
artifacts-<source>.json.

Usage: .venv/bin/python bench/artifacts_build.py [SITE] [--cache DIR] [--from-scratch] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from machine import describe  # bench/machine.py

from kubeprem.artifacts import cache as art
from kubeprem.artifacts import debian as deb
from kubeprem.cli.artifacts_cmds import cache_dir_of, mirror_of
from kubeprem.site import example_text, load_site

RESULTS_DIR = Path(__file__).parent / "results"


def results_file(source: str) -> Path:
    """artifacts.json for Debian's source (the first results kept there),
    artifacts-<source>.json for the others."""
    return RESULTS_DIR / (
        "artifacts.json" if source == "debian-source" else f"artifacts-{source}.json"
    )


def machine() -> dict[str, Any]:
    return describe()


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def log(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("site", nargs="?", help="site file (default: the `kubeprem init` example)")
    ap.add_argument("--cache", help="cache folder (default: the site's)")
    ap.add_argument("--from-scratch", action="store_true", help="also time a full build")
    ap.add_argument("--runs", type=int, default=5, help="repetitions of the cached runs")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="kubeprem-bench-") as tmp_s:
        tmp = Path(tmp_s)
        site_path = Path(args.site) if args.site else tmp / "site.yaml"
        if not args.site:
            site_path.write_text(example_text(), encoding="utf-8")
        loaded = load_site(site_path)
        site = loaded.site
        cache = cache_dir_of(loaded, args.cache)
        mirror = mirror_of(loaded)
        results: dict[str, Any] = {}
        results_path = results_file(site.artifacts.source)
        if results_path.is_file():
            results = json.loads(results_path.read_text()).get("results", {})

        print(
            f"artifacts for Kubernetes {site.cluster.version} ({site.artifacts.source}), "
            f"cache {cache}",
            file=sys.stderr,
        )
        t, first = timed(lambda: art.ensure_artifacts(site, cache, log, mirror=mirror))
        if not first.reused:
            results["first_run_on_this_machine_s"] = round(t, 2)
        size = sum(a.size for a in first.files.values())

        for key, verify in (("from_cache", False), ("from_cache_verified", True)):
            times = []
            for _ in range(args.runs):
                t, s = timed(
                    lambda v=verify: art.ensure_artifacts(
                        site, cache, lambda _m: None, mirror=mirror, verify=v
                    )
                )
                assert s.reused
                times.append(t)
            results[key] = {
                "median_s": round(statistics.median(times), 4),
                "min_s": round(min(times), 4),
                "runs": len(times),
            }
            print(f"{key}: median {statistics.median(times):.4f}s", file=sys.stderr)

        if site.artifacts.source == "debian-source":
            fresh = tmp / "assemble"
            (fresh / "src").mkdir(parents=True)
            tree = deb.source_tree(cache)
            (fresh / "src" / tree.name).symlink_to(tree)
            t, _ = timed(lambda: art.ensure_artifacts(site, fresh, log))
            results["assemble_from_build_s"] = round(t, 2)
            print(f"assemble_from_build: {t:.2f}s", file=sys.stderr)
            shutil.rmtree(fresh)

        if args.from_scratch:
            scratch = tmp / "scratch"
            os.environ["GOCACHE"] = str(tmp / "gocache")  # no help from earlier builds
            stamps: list[tuple[float, str]] = []
            start = time.perf_counter()

            def record(msg: str) -> None:
                stamps.append((round(time.perf_counter() - start, 1), msg))
                log(f"{stamps[-1][0]:7.1f}s {msg}")

            load_before = os.getloadavg()[0]
            t, _ = timed(lambda: art.ensure_artifacts(site, scratch, record, mirror=mirror))
            results["from_scratch"] = {
                "total_s": round(t, 1),
                "load_average_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
                "steps": [{"at_s": a, "step": m} for a, m in stamps if "still" not in m],
                "note": (
                    "new cache and empty GOCACHE; apt-get source, make, Debian files"
                    if site.artifacts.source == "debian-source"
                    else "new cache: empty Go module and build caches, every module "
                    "downloaded through GOPROXY and every package compiled"
                ),
            }
            print(f"from_scratch: {t:.1f}s", file=sys.stderr)

    doc = {
        "benchmark": "kubeprem artifacts",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "kubernetes_version": site.cluster.version,
        "source": site.artifacts.source,
        "set_size_mb": round(size / 1e6, 1),
        "results": results,
    }
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {results_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

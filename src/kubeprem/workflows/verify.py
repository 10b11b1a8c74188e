"""`kubeprem verify`: is the cluster healthy, and (with --chaos) does it stay so.

Called by the verify command and bench/chaos.py. The health check is the
status of every machine (etcd members, API servers, nodes) plus checks a
client cares about: every etcd member in the member list, and one write and
read back through the VIP with the admin certificate (the chaos probe, run
once). ``--chaos`` then runs the scenarios of ``chaos`` and writes their
results (``results.json``, ``summary.md``, one PNG timeline per scenario) into
``.kubeprem/<cluster>/verify/<UTC time>/``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubeprem.errors import OperationError
from kubeprem.site.load import LoadedSite
from kubeprem.transport.base import Transport
from kubeprem.workflows import chaos, gates
from kubeprem.workflows.backup import stamp
from kubeprem.workflows.status import gather_status

Say = Callable[[str], None]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class HealthReport:
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "checks": [c.__dict__ for c in self.checks],
            "warnings": self.warnings,
        }


def member_names(output: str) -> list[str]:
    """Names from ``etcdctl member list -w json``."""
    return sorted(str(m.get("name", "")) for m in json.loads(output).get("members", []))


async def health(loaded: LoadedSite, transports: Mapping[str, Transport]) -> HealthReport:
    site = loaded.site
    report = HealthReport()
    status = await gather_status(loaded, transports)
    report.warnings = list(status.warnings)
    for m in status.machines:
        detail = ", ".join(
            f"{k} {v}" for k, v in (("etcd", m.etcd), ("api", m.api), ("node", m.node)) if v != "-"
        )
        report.checks.append(Check(f"machine {m.name}", m.healthy(), m.error or detail))
    t = transports[site.controllers[0].name]
    r = await t.run(
        gates.etcdctl("member", "list", "-w", "json"), step="etcd member list", check=False
    )
    want = sorted(m.name for m in site.etcd_members)
    have = member_names(r.stdout) if r.ok else []
    report.checks.append(
        Check("etcd members", have == want, f"{', '.join(have) or (r.stderr.strip()[-120:])}")
    )
    probe = chaos.Probe(chaos.ProbeTarget.of(loaded))
    try:
        await asyncio.to_thread(probe.once, 0)
        report.checks.append(Check("write and read through the VIP", True, site.api_server_url))
    except Exception as exc:  # any failure of the probe is the finding
        report.checks.append(Check("write and read through the VIP", False, str(exc)[:200]))
    return report


@dataclass
class ChaosRun:
    folder: Path
    results: list[chaos.ScenarioResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_list(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.results]


async def run_chaos(
    loaded: LoadedSite,
    names: Sequence[str],
    *,
    say: Say,
    out_dir: Path | None = None,
) -> ChaosRun:
    unknown = [n for n in names if n not in chaos.SCENARIOS]
    if unknown:
        raise OperationError(
            f"unknown scenario {', '.join(unknown)}; known: {', '.join(chaos.SCENARIOS)}"
        )
    folder = out_dir or loaded.state_dir / "verify" / stamp(datetime.now(UTC))
    folder.mkdir(parents=True, exist_ok=True)
    results = await chaos.run_scenarios(loaded, names, folder, say=say)
    run = ChaosRun(folder, results)
    (folder / "results.json").write_text(json.dumps(run.to_list(), indent=2) + "\n")
    (folder / "summary.md").write_text(summary_table(run.results))
    return run


def summary_table(results: Sequence[chaos.ScenarioResult]) -> str:
    """The results as a Markdown table (the README quotes it)."""
    lines = [
        "| scenario | passed | outage s | goal s | failed s | probes | failures |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {'yes' if r.passed else 'no'} | {r.outage_seconds:.2f} | "
            f"{r.goal_seconds:.0f} | {r.failed_seconds:.2f} | {r.probes} | {r.failures} |"
        )
    return "\n".join(lines) + "\n"

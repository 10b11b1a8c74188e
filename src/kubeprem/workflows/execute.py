"""Carry out a ``Plan`` through one ``Transport`` per host, hosts in parallel.

Called by the apply workflow (and, later, by its phases, each with the part
of the plan it owns). Three stages:

1. drift check, every host at once: the files the plan will touch are
   hashed again; if any differs from what the plan saw, nothing is changed
   anywhere and ``DriftError`` says to plan again;
2. per host, in rank order: files (atomic writes, or chmod when only the
   mode differs), one ``daemon-reload``, one ``enable`` for all units, then
   start/restart in the renderers' order, then later phases' commands;
3. a summary per host: what was written, enabled, started and restarted, how
   long it took, and the error that stopped it.

A failing host stops at the failing change (files after it stay as they
were; writes are atomic) while other hosts go on; then ``ApplyError`` names
every failed host with its step, command, status and stderr. Progress goes
to a ``Progress`` callback; this layer prints nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kubeprem.errors import OperationError
from kubeprem.plan.facts import FileFacts, gather_file_facts
from kubeprem.plan.model import (
    Change,
    DaemonReload,
    EnableService,
    HostPlan,
    Plan,
    ReloadService,
    RestartService,
    RunCommand,
    StartService,
    WriteFile,
)
from kubeprem.transport.base import Transport

EventKind = Literal["host-start", "change-start", "change-done", "host-done", "host-failed"]


@dataclass(frozen=True)
class ProgressEvent:
    host: str
    kind: EventKind
    done: int  # changes finished on this host
    total: int  # changes planned for this host
    message: str = ""  # the change's one-line description, or the error


class Progress(Protocol):
    """Told about each host's progress; must not block."""

    def __call__(self, event: ProgressEvent) -> None: ...


class DriftError(OperationError):
    """Managed files changed between plan and apply; nothing was changed."""

    def __init__(self, drift: Mapping[str, Sequence[str]]) -> None:
        self.drift = {h: tuple(lines) for h, lines in drift.items()}
        lines = [f"{h}: {line}" for h, items in self.drift.items() for line in items]
        super().__init__(
            "files changed since the plan was made; nothing was changed. "
            "Run the plan again and review it:\n" + "\n".join(lines)
        )


@dataclass(frozen=True)
class HostResult:
    host: str
    files_written: tuple[str, ...] = ()
    files_chmodded: tuple[str, ...] = ()
    services_enabled: tuple[str, ...] = ()
    services_started: tuple[str, ...] = ()
    services_restarted: tuple[str, ...] = ()
    services_reloaded: tuple[str, ...] = ()
    commands_run: tuple[str, ...] = ()
    daemon_reloaded: bool = False
    changes_done: int = 0
    changes_planned: int = 0
    duration: float = 0.0
    error: OperationError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "files_written": list(self.files_written),
            "files_chmodded": list(self.files_chmodded),
            "services_enabled": list(self.services_enabled),
            "services_started": list(self.services_started),
            "services_restarted": list(self.services_restarted),
            "services_reloaded": list(self.services_reloaded),
            "commands_run": list(self.commands_run),
            "daemon_reloaded": self.daemon_reloaded,
            "changes": f"{self.changes_done}/{self.changes_planned}",
            "duration_s": round(self.duration, 3),
            "error": str(self.error) if self.error else None,
        }


@dataclass(frozen=True)
class ApplySummary:
    hosts: Mapping[str, HostResult]
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.hosts.values())

    def failed(self) -> dict[str, OperationError]:
        return {h: r.error for h, r in self.hosts.items() if r.error is not None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "hosts": {h: r.to_dict() for h, r in self.hosts.items()},
            "duration_s": round(self.duration, 3),
        }


class ApplyError(OperationError):
    """One or more hosts failed part-way; ``summary`` says what each did."""

    def __init__(self, summary: ApplySummary) -> None:
        self.summary = summary
        failed = summary.failed()
        lines = [str(err) for err in failed.values()]
        super().__init__(
            f"apply failed on {len(failed)} of {len(summary.hosts)} hosts "
            "(files not yet written are unchanged; run apply again to converge):\n"
            + "\n".join(lines)
        )


def _drift_of(change: WriteFile, now: FileFacts | None) -> str | None:
    """Why ``now`` is not what the plan saw for this file, or None."""
    if change.why == "create":
        return None if now is None else "now exists (the plan would create it)"
    if now is None:
        return "is gone (the plan would update it)"
    if change.old_sha256 is not None and now.sha256 != change.old_sha256:
        return f"content changed (sha256 {change.old_sha256[:12]} -> {(now.sha256 or '?')[:12]})"
    if now.mode != change.old_mode:
        old = f"{change.old_mode:04o}" if change.old_mode is not None else "?"
        new = f"{now.mode:04o}" if now.mode is not None else "?"
        return f"mode changed ({old} -> {new})"
    return None


async def check_drift(hp: HostPlan, transport: Transport) -> list[str]:
    """Lines describing each planned file that changed since the plan."""
    files = hp.files()
    now = await gather_file_facts(transport, [c.path for c in files])
    out = []
    for change in files:
        why = _drift_of(change, now.get(change.path))
        if why:
            out.append(f"{change.path} {why}")
    return out


class _HostRun:
    """The mutable tally of one host while it runs; frozen into HostResult."""

    def __init__(self, hp: HostPlan, transport: Transport, progress: Progress | None) -> None:
        self.hp = hp
        self.t = transport
        self.progress = progress
        self.done = 0
        self.tally: dict[str, list[str]] = {
            k: []
            for k in (
                "written",
                "chmodded",
                "enabled",
                "started",
                "restarted",
                "reloaded",
                "commands",
            )
        }
        self.reloaded = False

    def tell(self, kind: EventKind, message: str = "") -> None:
        if self.progress is not None:
            self.progress(
                ProgressEvent(self.hp.host, kind, self.done, len(self.hp.changes), message)
            )

    async def one(self, change: Change) -> None:
        step = change.describe()
        if isinstance(change, WriteFile):
            if change.why == "mode":
                await self.t.run(["chmod", f"{change.file.mode:04o}", change.path], step=step)
                self.tally["chmodded"].append(change.path)
            else:
                await self.t.put(change.file, step=step)
                self.tally["written"].append(change.path)
        elif isinstance(change, DaemonReload):
            await self.t.run(["systemctl", "daemon-reload"], step=step)
            self.reloaded = True
        elif isinstance(change, StartService):
            await self.t.run(["systemctl", "start", change.service], step=step)
            self.tally["started"].append(change.service)
        elif isinstance(change, RestartService):
            await self.t.run(["systemctl", "restart", change.service], step=step)
            self.tally["restarted"].append(change.service)
        elif isinstance(change, ReloadService):
            await self.t.run(["systemctl", "reload", change.service], step=step)
            self.tally["reloaded"].append(change.service)
        elif isinstance(change, RunCommand):
            await self.t.run(list(change.argv), step=step)
            self.tally["commands"].append(change.summary)
        else:  # EnableService is batched by the caller
            raise TypeError(f"cannot execute {change!r}")

    async def enable(self, batch: list[EnableService]) -> None:
        units = [c.service for c in batch]
        step = "enable " + ", ".join(units)
        self.tell("change-start", step)
        await self.t.run(["systemctl", "enable", *units], step=step)
        self.tally["enabled"] += units
        self.done += len(batch)
        self.tell("change-done", step)

    async def run(self) -> None:
        self.tell("host-start")
        changes = list(self.hp.changes)
        i = 0
        while i < len(changes):
            change = changes[i]
            if isinstance(change, EnableService):
                batch = []
                while i < len(changes) and isinstance(changes[i], EnableService):
                    c = changes[i]
                    assert isinstance(c, EnableService)
                    batch.append(c)
                    i += 1
                await self.enable(batch)
                continue
            self.tell("change-start", change.describe())
            await self.one(change)
            self.done += 1
            self.tell("change-done", change.describe())
            i += 1

    def result(self, duration: float, error: OperationError | None) -> HostResult:
        t = self.tally
        return HostResult(
            self.hp.host,
            files_written=tuple(t["written"]),
            files_chmodded=tuple(t["chmodded"]),
            services_enabled=tuple(t["enabled"]),
            services_started=tuple(t["started"]),
            services_restarted=tuple(t["restarted"]),
            services_reloaded=tuple(t["reloaded"]),
            commands_run=tuple(t["commands"]),
            daemon_reloaded=self.reloaded,
            changes_done=self.done,
            changes_planned=len(self.hp.changes),
            duration=duration,
            error=error,
        )


async def execute(
    plan: Plan,
    transports: Mapping[str, Transport],
    *,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    max_hosts: int | None = None,
    drift_check: bool = True,
) -> ApplySummary:
    """Apply ``plan``; raises DriftError (nothing done) or ApplyError (summary attached)."""
    start = clock()
    busy = {h: hp for h, hp in plan.hosts.items() if hp.changes}
    missing = [h for h in busy if h not in transports]
    if missing:
        raise ValueError(f"no transport for hosts with changes: {', '.join(missing)}")
    limit = asyncio.Semaphore(max_hosts or max(1, len(busy)))

    if drift_check:

        async def drift(host: str) -> list[str]:
            async with limit:
                return await check_drift(busy[host], transports[host])

        found = await asyncio.gather(*(drift(h) for h in busy))
        drifted = {h: lines for h, lines in zip(busy, found, strict=True) if lines}
        if drifted:
            raise DriftError(drifted)

    async def one_host(host: str) -> HostResult:
        async with limit:
            run = _HostRun(busy[host], transports[host], progress)
            t0 = clock()
            try:
                await run.run()
            except OperationError as err:
                run.tell("host-failed", str(err))
                return run.result(clock() - t0, err)
            run.tell("host-done")
            return run.result(clock() - t0, None)

    outcomes = await asyncio.gather(*(one_host(h) for h in busy), return_exceptions=True)
    results: dict[str, HostResult] = {}
    for host, outcome in zip(busy, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            raise outcome  # a bug, not a host's failure: raised once every host has stopped
        results[host] = outcome
    done = {host: results.get(host, HostResult(host)) for host in plan.hosts}
    summary = ApplySummary(done, clock() - start)
    if not summary.ok:
        raise ApplyError(summary)
    return summary


@dataclass
class RecordingProgress:
    """A ``Progress`` that keeps every event: for tests and simple logs."""

    events: list[ProgressEvent] = field(default_factory=list)

    def __call__(self, event: ProgressEvent) -> None:
        self.events.append(event)

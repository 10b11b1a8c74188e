"""Desired state against observed facts: the changes a host needs.

Pure. Called by the plan and apply workflows with the components'
``Rendered`` values for each machine and the ``HostFacts`` gathered for
the same paths and services (``wanted`` names them). Every decision to
change nothing is recorded as a ``Noop`` with its reason.

Rules:
- a file is written when missing or when its SHA-256 differs; only its mode
  differing is a chmod;
- ``daemon-reload`` once per host when any unit file's content changes;
- each service of a ``Rendered`` is enabled unless already enabled, started
  unless running, and restarted only when one of that ``Rendered``'s files,
  or a file it ``reads`` (a certificate, a binary), changes content (a mode
  change restarts nothing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from kubeprem.components.base import File, Rendered
from kubeprem.plan.facts import FileFacts, HostFacts
from kubeprem.plan.model import (
    Change,
    DaemonReload,
    EnableService,
    HostPlan,
    Noop,
    Plan,
    ReloadService,
    RestartService,
    StartService,
    WriteFile,
    ordered,
)

UNIT_DIRS = (
    "/etc/systemd/system/",
    "/run/systemd/system/",
    "/lib/systemd/system/",
    "/usr/lib/systemd/system/",
)
# is-enabled answers that need no `systemctl enable`
ENABLED = frozenset({"enabled", "static", "alias", "generated"})
# is-active answers for a unit that runs (activating: starting or auto-restarting)
RUNNING = frozenset({"active", "reloading", "activating"})


def is_unit_path(path: str) -> bool:
    return path.startswith(UNIT_DIRS)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wanted(rendered: Sequence[Rendered]) -> tuple[list[str], list[str]]:
    """The paths and services whose facts the diff needs, each once, in order."""
    paths: dict[str, None] = {}
    services: dict[str, None] = {}
    for r in rendered:
        for f in r.files:
            paths[f.path] = None
        for s in r.services:
            services[s] = None
    return list(paths), list(services)


def _unique_files(host: str, rendered: Sequence[Rendered]) -> list[tuple[File, str]]:
    seen: dict[str, tuple[File, str]] = {}
    for r in rendered:
        for f in r.files:
            if f.path in seen:
                other, comp = seen[f.path]
                if (other.content, other.mode, other.secret) != (f.content, f.mode, f.secret):
                    raise ValueError(
                        f"{host}: {f.path} is rendered differently by {comp} and {r.component}"
                    )
                continue
            seen[f.path] = (f, r.component)
    return list(seen.values())


def diff_file(file: File, component: str, observed: FileFacts | None) -> WriteFile | Noop:
    """One file: missing, other content, other mode, or nothing to do."""
    if observed is None:
        return WriteFile(file, "create", component)
    if observed.sha256 is None or not observed.regular:
        # unreadable, or a symlink or directory: replaced by the regular file
        return WriteFile(file, "content", component, observed.sha256, observed.mode)
    if observed.sha256 != file.sha256():
        return WriteFile(file, "content", component, observed.sha256, observed.mode)
    if observed.mode != file.mode:
        return WriteFile(file, "mode", component, observed.sha256, observed.mode)
    return Noop(file.path, f"content matches (sha256 {observed.sha256[:12]}), mode {file.mode:04o}")


def diff_host(host: str, rendered: Sequence[Rendered], facts: HostFacts) -> HostPlan:
    """The changes ``host`` needs to match ``rendered``, given its ``facts``."""
    changes: list[Change] = []
    noops: list[Noop] = []
    written: set[str] = set()  # paths whose content changes
    for file, component in _unique_files(host, rendered):
        if file.path not in facts.files:
            raise ValueError(f"{host}: no facts gathered for {file.path}")
        decision = diff_file(file, component, facts.files[file.path])
        if isinstance(decision, Noop):
            noops.append(decision)
            continue
        changes.append(decision)
        if decision.content_changes:
            written.add(file.path)

    units = tuple(p for p in sorted(written) if is_unit_path(p))
    if units:
        changes.append(DaemonReload(units))
    else:
        noops.append(Noop("daemon-reload", "no unit file changes"))

    # A service's restart trigger is the union of the files of every Rendered
    # that lists it, so a unit shared by two components restarts for either.
    triggers: dict[str, list[str]] = {}
    reloadable = {s for r in rendered for s in r.reloads}
    for r in rendered:
        changed = [f.path for f in r.files if f.path in written]
        changed += [p for p in r.reads if p in written and p not in changed]
        for s in r.services:
            triggers.setdefault(s, [])
            triggers[s] += [p for p in changed if p not in triggers[s]]

    for service, because in triggers.items():
        state = facts.services.get(service)
        if state is None:
            raise ValueError(f"{host}: no facts gathered for service {service}")
        if state.enabled in ENABLED:
            noops.append(Noop(service, f"is-enabled: {state.enabled}"))
        else:
            changes.append(EnableService(service, state.enabled))
        if state.active not in RUNNING:
            changes.append(StartService(service, state.active))
        elif because and service in reloadable and not any(map(is_unit_path, because)):
            changes.append(ReloadService(service, tuple(because)))
        elif because:
            changes.append(RestartService(service, tuple(because)))
        else:
            noops.append(Noop(service, f"{state.active}, and none of its files change"))
    return HostPlan(host, ordered(changes), tuple(noops))


def diff(desired: Mapping[str, Sequence[Rendered]], facts: Mapping[str, HostFacts]) -> Plan:
    """The plan for every host in ``desired`` (machine order is kept)."""
    return Plan(
        {host: diff_host(host, rendered, facts[host]) for host, rendered in desired.items()}
    )

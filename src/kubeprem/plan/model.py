"""The plan as a value: per host, an ordered list of changes.

Built by ``plan.diff`` (pure), printed by ``plan.render``, carried out by
``workflows.execute``. Every change knows its ``rank`` (files, then
daemon-reload, then enable, then start/restart, then commands), how to
describe itself in one line and as a JSON dict, and never carries a secret's
content into either. Later phases add their own changes (routes, health
gates) with ``Plan.with_changes``; ``RunCommand`` covers anything that is one
argument list on the host.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal

from kubeprem.components.base import File

# Previews of current contents for the plan's diffs: per file and per host.
PREVIEW_LIMIT = 64 * 1024
PREVIEW_FILES = 50
# What a key, a kubeconfig's client key (YAML or JSON), a token, a password or
# an encryption secret looks like in text, in any case: "token: x",
# '"client-key-data": "x"', "PASSWORD=x"; not a longer name such as etcd's
# "--initial-cluster-token=". A false match only costs a diff.
SECRET_MARKS = re.compile(
    r"PRIVATE KEY-----"
    r"""|["']?(?<![\w-])(client-key-data|token|password|passwd|secret)["']?\s*[:=]""",
    re.IGNORECASE,
)


def looks_secret(text: str) -> bool:
    return SECRET_MARKS.search(text) is not None


def _previewable(file: File, limit: int) -> bool:
    if file.known_sha256 is not None or len(file.content) > limit or b"\0" in file.content:
        return False
    try:
        file.content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class Rank(IntEnum):
    """Order of changes within a host."""

    FILES = 10
    DAEMON_RELOAD = 20
    ENABLE = 30
    SERVICES = 40
    COMMANDS = 50


WriteWhy = Literal["create", "content", "mode"]


@dataclass(frozen=True)
class WriteFile:
    """Write ``file``; ``why`` says what differs. ``old_*``: as observed (None: missing).

    ``old_text`` is the current content for a readable diff; it is only ever
    set for non-secret text files (see ``Plan.with_previews``).
    """

    file: File
    why: WriteWhy
    component: str
    old_sha256: str | None = None
    old_mode: int | None = None
    old_text: str | None = None
    action: str = field(default="write-file", init=False)
    rank: Rank = field(default=Rank.FILES, init=False)

    @property
    def path(self) -> str:
        return self.file.path

    def __repr__(self) -> str:
        # File's own repr shows its bytes; a plan in a log must not show a key.
        return f"WriteFile({self.path!r}, why={self.why!r}, component={self.component!r})"

    @property
    def content_changes(self) -> bool:
        """The bytes change (new file or new content), not only the mode."""
        return self.why != "mode"

    def describe(self) -> str:
        what = {"create": "create", "content": "update", "mode": "chmod"}[self.why]
        mode = f"{self.file.mode:04o}"
        if self.why == "mode":
            old = f"{self.old_mode:04o}" if self.old_mode is not None else "?"
            return f"{what} {self.path} (mode {old} -> {mode})"
        if self.file.secret:
            return f"{what} {self.path} (secret, mode {mode})"
        return f"{what} {self.path} ({len(self.file.content)} bytes, mode {mode})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action,
            "path": self.path,
            "why": self.why,
            "component": self.component,
            "mode": f"{self.file.mode:04o}",
        }
        if self.old_mode is not None and self.old_mode != self.file.mode:
            out["old_mode"] = f"{self.old_mode:04o}"
        if self.file.secret:
            out["secret"] = True  # no size, no hash: "changed" is all a plan says
        else:
            out["size"] = len(self.file.content)
        return out


@dataclass(frozen=True)
class DaemonReload:
    """``systemctl daemon-reload``, once per host, when a unit file changed."""

    units: tuple[str, ...]  # the changed unit files that call for it
    action: str = field(default="daemon-reload", init=False)
    rank: Rank = field(default=Rank.DAEMON_RELOAD, init=False)

    def describe(self) -> str:
        return "systemctl daemon-reload (" + ", ".join(self.units) + " changed)"

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "because": list(self.units)}


@dataclass(frozen=True)
class EnableService:
    service: str
    was: str  # is-enabled as observed
    action: str = field(default="enable-service", init=False)
    rank: Rank = field(default=Rank.ENABLE, init=False)

    def describe(self) -> str:
        return f"enable {self.service} (is {self.was})"

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "service": self.service, "was": self.was}


@dataclass(frozen=True)
class StartService:
    service: str
    was: str  # is-active as observed
    action: str = field(default="start-service", init=False)
    rank: Rank = field(default=Rank.SERVICES, init=False)

    def describe(self) -> str:
        return f"start {self.service} (is {self.was})"

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "service": self.service, "was": self.was}


@dataclass(frozen=True)
class _ServiceForFiles:
    """A running service acting on its changed files (``because``)."""

    service: str
    because: tuple[str, ...]  # its files that change
    action: str = field(default="", init=False)
    rank: Rank = field(default=Rank.SERVICES, init=False)

    def describe(self) -> str:
        shown = ", ".join(self.because[:3]) + (" ..." if len(self.because) > 3 else "")
        verb = self.action.removesuffix("-service")
        return f"{verb} {self.service} ({shown} changed)"

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "service": self.service, "because": list(self.because)}


@dataclass(frozen=True)
class RestartService(_ServiceForFiles):
    action: str = field(default="restart-service", init=False)


@dataclass(frozen=True)
class ReloadService(_ServiceForFiles):
    """``systemctl reload``: the service reads its changed files again
    without stopping (see ``Rendered.reloads``)."""

    action: str = field(default="reload-service", init=False)


@dataclass(frozen=True)
class RunCommand:
    """A later phase's change that is one command on the host (a route, say)."""

    argv: tuple[str, ...]
    summary: str  # what it does, for people: "route 10.200.1.0/24 via 10.240.0.21"
    rank: Rank = Rank.COMMANDS
    action: str = field(default="run-command", init=False)

    def describe(self) -> str:
        return self.summary

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "summary": self.summary, "argv": list(self.argv)}


Change = (
    WriteFile
    | DaemonReload
    | EnableService
    | StartService
    | RestartService
    | ReloadService
    | RunCommand
)


@dataclass(frozen=True)
class Noop:
    """A decision to change nothing, and why (shown with --verbose)."""

    subject: str  # a path or a service
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"subject": self.subject, "reason": self.reason}


def ordered(changes: Sequence[Change]) -> tuple[Change, ...]:
    """Stable sort by rank: the order within a rank is the renderers' order."""
    return tuple(sorted(changes, key=lambda c: int(c.rank)))


@dataclass(frozen=True)
class HostPlan:
    host: str
    changes: tuple[Change, ...] = ()
    noops: tuple[Noop, ...] = ()

    def files(self) -> tuple[WriteFile, ...]:
        return tuple(c for c in self.changes if isinstance(c, WriteFile))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.changes:
            out[c.action] = out.get(c.action, 0) + 1
        return out


@dataclass(frozen=True)
class Plan:
    """Changes per host, in the site's machine order."""

    hosts: Mapping[str, HostPlan]

    @property
    def empty(self) -> bool:
        return not any(hp.changes for hp in self.hosts.values())

    def total(self) -> int:
        return sum(len(hp.changes) for hp in self.hosts.values())

    def to_dict(self, *, verbose: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hosts": {h: [c.to_dict() for c in hp.changes] for h, hp in self.hosts.items()}
        }
        if verbose:
            out["noops"] = {h: [n.to_dict() for n in hp.noops] for h, hp in self.hosts.items()}
        return out

    def to_json(self, *, verbose: bool = False) -> str:
        return json.dumps(self.to_dict(verbose=verbose), indent=2, sort_keys=False) + "\n"

    def with_changes(
        self, host: str, changes: Sequence[Change], noops: Sequence[Noop] = ()
    ) -> Plan:
        """A new plan with ``changes`` added to ``host``, kept in rank order."""
        old = self.hosts.get(host, HostPlan(host))
        new = HostPlan(host, ordered([*old.changes, *changes]), (*old.noops, *noops))
        return Plan({**self.hosts, host: new})

    def preview_paths(
        self, host: str, *, limit: int = PREVIEW_LIMIT, most: int = PREVIEW_FILES
    ) -> tuple[str, ...]:
        """Files worth reading for a diff: their content changes (the hash
        differs), they are not secret, and the new content is text of at
        most ``limit`` bytes (binaries carry their hash from the artifact
        manifest). At most ``most`` of them, in plan order."""
        hp = self.hosts.get(host)
        if hp is None:
            return ()
        return tuple(
            c.path
            for c in hp.files()
            if c.why == "content" and not c.file.secret and _previewable(c.file, limit)
        )[:most]

    def with_previews(self, previews: Mapping[str, Mapping[str, str]]) -> Plan:
        """Attach current contents (host -> path -> text) for readable diffs.

        Secret files never get one, whatever ``previews`` holds, and neither
        does a current text that holds a private key or a kubeconfig's
        client key (someone put a secret where kubeprem writes none).
        """
        hosts: dict[str, HostPlan] = {}
        for host, hp in self.hosts.items():
            texts = {p: t for p, t in previews.get(host, {}).items() if not looks_secret(t)}
            changes: list[Change] = []
            for c in hp.changes:
                if isinstance(c, WriteFile) and not c.file.secret and c.path in texts:
                    c = WriteFile(
                        c.file, c.why, c.component, c.old_sha256, c.old_mode, texts[c.path]
                    )
                changes.append(c)
            hosts[host] = HostPlan(host, tuple(changes), hp.noops)
        return Plan(hosts)

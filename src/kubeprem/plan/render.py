"""The plan for people: per host, one line per change, diffs of text files.

Called by the plan and apply commands. ``renderable`` gives a rich
renderable for a terminal; ``to_text`` the same as plain text (goldens,
logs). JSON is ``Plan.to_json``. Secret files show only that they change:
no content, no diff, no size, no hash.
"""

from __future__ import annotations

import difflib
import io

from rich.console import Console, Group, RenderableType
from rich.text import Text

from kubeprem.plan.diff import sha256
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

_SIGN = {"create": "+", "content": "~", "mode": "~"}
_COUNT_WORDS = {
    "write-file": "file",
    "daemon-reload": "daemon-reload",
    "enable-service": "enable",
    "start-service": "start",
    "restart-service": "restart",
    "reload-service": "reload",
    "run-command": "command",
}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 or word.endswith('reload') else 's'}"


def host_counts(hp: HostPlan) -> str:
    counts = hp.counts()
    return ", ".join(_plural(n, _COUNT_WORDS.get(a, a)) for a, n in counts.items())


def file_diff(change: WriteFile, max_lines: int, *, new_contents: bool = False) -> list[Text]:
    """The lines shown under a file change: a unified diff, or why there is none.

    A file that does not exist yet shows its contents only with
    ``new_contents`` (``plan --verbose``): a first plan creates hundreds of
    files, and their full text would bury the changes worth reading.
    """
    f = change.file
    if change.why == "mode" or (change.why == "create" and not new_contents):
        return []
    if f.secret:
        return [Text("(secret: contents not shown)", style="yellow")]
    try:
        new = f.content.decode("utf-8")
    except UnicodeDecodeError:
        return [Text(f"binary, {len(f.content)} bytes, sha256 {f.sha256()[:12]}")]
    if change.why == "create":
        old = ""
    elif change.old_text is None:
        old_sha = (change.old_sha256 or "unreadable")[:12]
        return [Text(f"content changes: sha256 {old_sha} -> {sha256(f.content)[:12]}")]
    else:
        old = change.old_text
    lines = list(
        difflib.unified_diff(
            old.splitlines(),
            new.splitlines(),
            f"{f.path} (now)" if change.why != "create" else "/dev/null",
            f"{f.path} (planned)",
            lineterm="",
        )
    )
    out: list[Text] = []
    for line in lines[:max_lines]:
        style = ""
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        out.append(Text(line, style=style))
    if len(lines) > max_lines:
        out.append(Text(f"... {len(lines) - max_lines} more diff lines", style="dim"))
    return out


def change_line(change: Change) -> Text:
    if isinstance(change, WriteFile):
        return Text(
            f"{_SIGN[change.why]} {change.describe()}",
            style="green" if change.why == "create" else "yellow",
        )
    if isinstance(
        change, DaemonReload | EnableService | StartService | RestartService | ReloadService
    ):
        return Text(f"> {change.describe()}", style="magenta")
    if isinstance(change, RunCommand):
        return Text(f"$ {change.describe()}", style="blue")
    raise TypeError(f"unknown change {change!r}")  # pragma: no cover


def renderable(plan: Plan, *, verbose: bool = False, max_diff_lines: int = 40) -> RenderableType:
    """The plan as rich text; ``verbose`` adds each no-op and its reason, and
    the contents of files to be created."""
    parts: list[RenderableType] = []
    for host, hp in plan.hosts.items():
        if not hp.changes:
            parts.append(Text.assemble((host, "bold"), ": no changes", style="dim"))
        else:
            parts.append(Text.assemble((host, "bold"), f": {host_counts(hp)}"))
        for change in hp.changes:
            parts.append(Text("  ") + change_line(change))
            if isinstance(change, WriteFile):
                parts += [
                    Text("      ") + line
                    for line in file_diff(change, max_diff_lines, new_contents=verbose)
                ]
        if verbose:
            for noop in hp.noops:
                parts.append(Text(f"  = {noop.subject}: {noop.reason}", style="dim"))
    parts.append(Text(summary_line(plan), style="bold"))
    return Group(*parts)


def summary_line(plan: Plan) -> str:
    total = len(plan.hosts)
    changed = sum(1 for hp in plan.hosts.values() if hp.changes)
    if plan.empty:
        return f"Plan: no changes; all {total} hosts converged."
    return (
        f"Plan: {_plural(plan.total(), 'change')} on {changed} of {total} hosts; "
        f"{total - changed} converged."
    )


def to_text(
    plan: Plan, *, verbose: bool = False, max_diff_lines: int = 40, width: int = 100
) -> str:
    """``renderable`` as plain text, without colour."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, highlight=False, soft_wrap=True)
    console.print(renderable(plan, verbose=verbose, max_diff_lines=max_diff_lines))
    return buf.getvalue()

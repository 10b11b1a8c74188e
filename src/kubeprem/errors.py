"""The one error tree of kubeprem; every layer raises from here.

The CLI turns these into one line on stderr and an exit status. Third-party
exceptions never reach users: wrap them with ``raise ... from exc``.

    KubepremError                exit 1 unless a subclass says otherwise
    ├── InputError               exit 2: bad input, nothing was changed
    │   ├── SiteError            a site file problem, with file:line:column
    │   └── PreflightError       the machines are not ready (a port taken, swap on, ...)
    └── OperationError           exit 1: something failed while acting
        ├── RemoteError          a command on a host failed (host, step, argv, status, stderr)
        └── PrerequisiteError    this machine lacks what the operation needs
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class KubepremError(Exception):
    """Root of every error kubeprem raises on purpose."""

    exit_status = 1


class InputError(KubepremError):
    """The operator's input is wrong; nothing was changed. Exit status 2."""

    exit_status = 2


@dataclass(frozen=True)
class Location:
    """Where in a file something is; line and column count from 1."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        out = self.file
        if self.line is not None:
            out += f":{self.line}"
            if self.column is not None:
                out += f":{self.column}"
        return out


class SiteError(InputError):
    """Problems in a site file, each one line: ``file:line:column: message``."""

    def __init__(self, location: Location, message: str) -> None:
        self.problems: list[tuple[Location, str]] = [(location, message)]
        super().__init__(f"{location}: {message}")

    @classmethod
    def many(cls, problems: Sequence[tuple[Location, str]]) -> SiteError:
        """One error for several problems, in file order."""
        ordered = sorted(problems, key=lambda p: (p[0].line or 0, p[0].column or 0))
        err = cls(*ordered[0])
        err.problems = list(ordered)
        err.args = ("\n".join(f"{loc}: {msg}" for loc, msg in ordered),)
        return err

    @property
    def location(self) -> Location:
        return self.problems[0][0]


class PreflightError(InputError):
    """Apply's checks of the facts refused the machines before anything was
    changed: the operator fixes the machine (or the site file) and reruns.
    Exit status 2, like any refusal that changed nothing."""


class OperationError(KubepremError):
    """An operation failed part-way; the message says where."""


class PrerequisiteError(OperationError):
    """This machine lacks something the operation needs (a program, root)."""


class RemoteError(OperationError):
    """A command run on a host failed."""

    def __init__(
        self,
        host: str,
        step: str,
        argv: Sequence[str],
        status: int | None,
        stderr: str = "",
    ) -> None:
        self.host = host
        self.step = step
        self.argv = tuple(argv)
        self.status = status
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-5:]
        shown = " ".join(self.argv)
        if len(shown) > 200:
            shown = shown[:197] + "..."
        # no status: the command never finished (timeout, lost connection, a
        # failed SFTP write); the reason is in ``stderr``
        outcome = "failed" if status is None else f"exited with status {status}"
        msg = f"{host}: {step}: `{shown}` {outcome}"
        if tail:
            msg += ": " + " | ".join(tail)
        super().__init__(msg)

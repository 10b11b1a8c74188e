"""The transport seam: how kubeprem runs commands and writes files on a host.

Everything above this layer talks to machines only through ``Transport``.
Two implementations ship: ``SSHTransport`` (asyncssh, one connection per
host) and ``FakeTransport`` (an in-memory host for tests of plan and apply
logic, so no test patches internals). Commands are argument lists; they are
quoted once, in the implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kubeprem.components.base import File
from kubeprem.errors import RemoteError


@dataclass(frozen=True)
class Result:
    """What a finished command left behind."""

    argv: tuple[str, ...]
    status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == 0


class Transport(Protocol):
    """One host. Implementations limit concurrent sessions themselves."""

    @property
    def host(self) -> str:
        """The machine's name, used in every error."""
        ...

    async def run(
        self,
        argv: Sequence[str],
        *,
        step: str,
        stdin: bytes | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> Result:
        """Run ``argv``; with ``check`` a non-zero status raises RemoteError."""
        ...

    async def put(self, file: File, *, step: str) -> None:
        """Write ``file`` atomically: temporary file, fsync, mode, rename."""
        ...

    async def close(self) -> None: ...


def checked(host: str, step: str, result: Result) -> Result:
    """``result`` if it succeeded, else the RemoteError that names everything."""
    if result.status != 0:
        raise RemoteError(host, step, result.argv, result.status, result.stderr)
    return result

"""SSH transport: one asyncssh connection per host, reused for every step.

Called by the workflows through ``Transport``. A connection carries at most
``max_sessions`` concurrent channels (OpenSSH's MaxSessions defaults to 10);
files go over one SFTP session per host and replace their target atomically.
asyncssh's exceptions never escape: they become ``OperationError`` or
``RemoteError`` naming the host and the step.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import secrets
import shlex
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

with warnings.catch_warnings():
    # asyncssh still names DSA keys, which cryptography 51 warns about at import
    # time, on every command's stderr; kubeprem neither makes nor accepts DSA keys
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import asyncssh

from kubeprem.components.base import File
from kubeprem.errors import OperationError, RemoteError
from kubeprem.transport.base import Result, checked

# A write goes to `.<name>.kubeprem-<8 hex>` beside its target, then is renamed
# over it. A killed run can leave that temporary behind: apply removes names
# matching TEMP_GLOB in the directories it manages before writing.
TEMP_GLOB = ".*.kubeprem-????????"


def temp_name(name: str) -> str:
    return f".{name}.kubeprem-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to reach one host."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key: Path | None = None
    known_hosts: Path | None = None  # None: the user's ~/.ssh/known_hosts
    connect_timeout: float = 10.0

    def describe(self) -> str:
        return f"{self.name} ({self.user}@{self.address}:{self.port})"


class SSHTransport:
    """``Transport`` over SSH. Connects lazily; ``close()`` ends the connection."""

    def __init__(self, target: SSHTarget, *, max_sessions: int = 8) -> None:
        self.target = target
        self._sessions = asyncio.Semaphore(max_sessions)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()
        self.round_trips = 0  # commands and file writes sent, for benchmarks

    @property
    def host(self) -> str:
        return self.target.name

    async def connect(self) -> asyncssh.SSHClientConnection:
        async with self._lock:
            if self._conn is not None:
                return self._conn
            t = self.target
            if t.key is not None and not t.key.is_file():
                raise OperationError(
                    f"{t.describe()}: SSH key {t.key} does not exist; set ssh.key in the "
                    "site file to the private key authorised on the machines"
                )
            try:
                self._conn = await asyncssh.connect(
                    t.address,
                    port=t.port,
                    username=t.user,
                    client_keys=[str(t.key)] if t.key else (),
                    known_hosts=str(t.known_hosts) if t.known_hosts else (),
                    connect_timeout=t.connect_timeout,
                    keepalive_interval=15,
                    agent_path=None,
                    config=None,
                )
            except asyncssh.PermissionDenied as exc:
                raise OperationError(
                    f"{t.describe()}: SSH login refused with key {t.key}; authorise its "
                    f"public key ({t.key}.pub) for {t.user} on that machine"
                ) from exc
            except asyncssh.KeyImportError as exc:
                raise OperationError(
                    f"{t.describe()}: cannot read SSH key {t.key}: {exc}; it must be an "
                    "unencrypted private key (OpenSSH or PEM format)"
                ) from exc
            except asyncssh.HostKeyNotVerifiable as exc:
                raise OperationError(
                    f"{t.describe()}: host key not verifiable against "
                    f"{t.known_hosts or '~/.ssh/known_hosts'}; add the machine's key there "
                    "(ssh-keyscan, checked out of band) and retry"
                ) from exc
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
                raise OperationError(
                    f"{t.describe()}: cannot connect: {reason}; check that the machine is up, "
                    "its address and SSH port are right, and sshd runs"
                ) from exc
            return self._conn

    async def run(
        self,
        argv: Sequence[str],
        *,
        step: str,
        stdin: bytes | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> Result:
        conn = await self.connect()
        command = shlex.join(argv)
        async with self._sessions:
            self.round_trips += 1
            try:
                proc = await conn.run(
                    command, input=stdin, check=False, timeout=timeout, encoding=None
                )
            except asyncssh.TimeoutError as exc:
                raise RemoteError(
                    self.host, step, argv, None, f"timed out after {timeout} s"
                ) from exc
            except (OSError, asyncssh.Error) as exc:
                raise RemoteError(self.host, step, argv, None, f"connection lost: {exc}") from exc
        status = proc.exit_status if proc.exit_status is not None else -1
        result = Result(tuple(argv), status, _text(proc.stdout), _text(proc.stderr))
        return checked(self.host, step, result) if check else result

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        conn = await self.connect()
        async with self._lock:
            if self._sftp is None:
                try:
                    self._sftp = await conn.start_sftp_client()
                except (OSError, asyncssh.Error) as exc:
                    raise OperationError(f"{self.host}: cannot start SFTP: {exc}") from exc
            return self._sftp

    async def put(self, file: File, *, step: str) -> None:
        sftp = await self._sftp_client()
        directory, name = posixpath.split(file.path)
        tmp = posixpath.join(directory, temp_name(name))
        async with self._sessions:
            self.round_trips += 1
            try:
                await sftp.makedirs(directory, exist_ok=True)
                async with sftp.open(tmp, "wb", asyncssh.SFTPAttrs(permissions=0o600)) as f:
                    await f.write(file.content)
                    await f.fsync()
                await sftp.chmod(tmp, file.mode)
                await sftp.posix_rename(tmp, file.path)
            except (OSError, asyncssh.Error) as exc:
                with contextlib.suppress(OSError, asyncssh.Error):
                    await sftp.remove(tmp)  # best effort: it may not exist yet
                raise RemoteError(
                    self.host, step, ["sftp-put", file.path], None, f"{type(exc).__name__}: {exc}"
                ) from exc

    async def close(self) -> None:
        if self._sftp is not None:
            self._sftp.exit()
            self._sftp = None
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
            self._conn = None


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data

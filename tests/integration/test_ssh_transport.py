"""SSHTransport against a real OpenSSH server on loopback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeprem.components.base import File
from kubeprem.errors import OperationError, RemoteError
from kubeprem.transport.ssh import SSHTarget, SSHTransport
from tests.integration.sshd import Sshd, free_port, running_sshd

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("sshd on loopback needs root here (login as root)", allow_module_level=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def target(sshd: Sshd, **kw: object) -> SSHTarget:
    base: dict[str, object] = {
        "name": "loop",
        "address": "127.0.0.1",
        "port": sshd.port,
        "key": sshd.client_key,
        "known_hosts": sshd.known_hosts,
    }
    base.update(kw)
    return SSHTarget(**base)  # type: ignore[arg-type]


def test_run_quotes_arguments_once(sshd: Sshd) -> None:
    async def go() -> None:
        t = SSHTransport(target(sshd))
        try:
            r = await t.run(["printf", "%s|", "a b", "$HOME", "'q'", ";rm -rf /"], step="echo")
            assert r.stdout == "a b|$HOME|'q'|;rm -rf /|"
            r = await t.run(["cat"], step="stdin", stdin=b"hello")
            assert r.stdout == "hello"
            with pytest.raises(RemoteError) as info:
                await t.run(["sh", "-c", "echo oops >&2; exit 3"], step="fail")
            msg = str(info.value)
            assert "loop: fail:" in msg and "status 3" in msg and "oops" in msg
            # many commands share one connection
            results = await asyncio.gather(*(t.run(["true"], step="p") for _ in range(30)))
            assert all(r.ok for r in results)
        finally:
            await t.close()

    asyncio.run(go())


def test_put_is_atomic_with_mode(sshd: Sshd, tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "secret.key"

    async def go() -> None:
        t = SSHTransport(target(sshd))
        try:
            await t.put(File(str(path), b"first\n", 0o600), step="write")
            await t.put(File(str(path), b"second\n", 0o600), step="write")
        finally:
            await t.close()

    asyncio.run(go())
    assert path.read_bytes() == b"second\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temporary left


def test_wrong_key_is_a_clear_error(sshd: Sshd, tmp_path: Path) -> None:
    other = tmp_path / "other"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {other}")

    async def go() -> None:
        t = SSHTransport(target(sshd, key=other))
        await t.run(["true"], step="x")

    with pytest.raises(OperationError, match=r"loop \(root@127.0.0.1:\d+\): SSH login refused"):
        asyncio.run(go())


def test_unknown_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")

    async def go() -> None:
        await SSHTransport(target(sshd, known_hosts=empty)).run(["true"], step="x")

    with pytest.raises(OperationError, match="host key not verifiable"):
        asyncio.run(go())


def test_unreachable_host_is_a_clear_error(sshd: Sshd) -> None:
    async def go() -> None:
        await SSHTransport(target(sshd, port=free_port(), connect_timeout=3)).run(
            ["true"], step="x"
        )

    with pytest.raises(OperationError, match="cannot connect"):
        asyncio.run(go())

"""Reaching a site's machines: one SSH transport per machine.

Called by every workflow that acts on machines. Host keys are verified:
against the lab's known_hosts in the state folder when the lab wrote one,
otherwise against the operator's ~/.ssh/known_hosts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from kubeprem.site.load import LoadedSite
from kubeprem.transport.base import Transport
from kubeprem.transport.ssh import SSHTarget, SSHTransport


def known_hosts(loaded: LoadedSite) -> str | None:
    path = loaded.state_dir / "ssh" / "known_hosts"
    return str(path) if path.exists() else None


def ssh_targets(loaded: LoadedSite, names: Sequence[str] | None = None) -> dict[str, SSHTarget]:
    site = loaded.site
    known = loaded.state_dir / "ssh" / "known_hosts"
    out = {}
    for m in site.machines:
        if names is not None and m.name not in names:
            continue
        out[m.name] = SSHTarget(
            name=m.name,
            address=str(m.address),
            port=m.ssh.port or site.ssh.port,
            user=m.ssh.user or site.ssh.user,
            key=loaded.ssh_key(m.name),
            known_hosts=known if known.exists() else None,
        )
    return out


@asynccontextmanager
async def connected(
    loaded: LoadedSite, names: Sequence[str] | None = None
) -> AsyncIterator[dict[str, Transport]]:
    """Transports for the site's machines, closed on exit."""
    transports: dict[str, SSHTransport] = {
        name: SSHTransport(t) for name, t in ssh_targets(loaded, names).items()
    }
    try:
        yield dict(transports)
    finally:
        for t in transports.values():
            await t.close()


def round_trips(transports: dict[str, Transport]) -> dict[str, int]:
    """Commands and file writes sent per host (SSH transports only)."""
    return {h: t.round_trips for h, t in transports.items() if isinstance(t, SSHTransport)}

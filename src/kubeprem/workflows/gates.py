"""Health gates between apply phases, and the commands behind `status`.

Each gate runs a fixed argument list on a machine until it succeeds or its
time runs out; the error then names the host, what was awaited and the last
answer. Called by the apply workflow and by status.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from kubeprem.components import paths
from kubeprem.errors import OperationError
from kubeprem.site.model import Site
from kubeprem.transport.base import Result, Transport

KUBECTL = f"{paths.BIN_DIR}/kubectl"
ETCDCTL = f"{paths.BIN_DIR}/etcdctl"
ETCDUTL = f"{paths.BIN_DIR}/etcdutl"


def snapshot_tool(site: Site) -> str:
    """What checks and restores a snapshot file: etcdctl for etcd 3.4 (the
    1.20 row), etcdutl from 3.6 (whose etcdctl only saves)."""
    from kubeprem.components.versions import features

    return ETCDUTL if features(site).etcdutl else ETCDCTL


def etcdctl(*args: str, endpoint: str = "https://127.0.0.1:2379") -> list[str]:
    return [
        ETCDCTL,
        f"--endpoints={endpoint}",
        f"--cacert={paths.ETCD_CA_CRT}",
        f"--cert={paths.ETCD_HEALTHCHECK_CLIENT_CRT}",
        f"--key={paths.ETCD_HEALTHCHECK_CLIENT_KEY}",
        "--command-timeout=5s",
        *args,
    ]


def kubectl(*args: str, server: str | None = None) -> list[str]:
    argv = [KUBECTL, f"--kubeconfig={paths.ADMIN_CONF}", "--request-timeout=10s"]
    if server:
        argv.append(f"--server={server}")
    return [*argv, *args]


async def until(
    transport: Transport,
    argv: Sequence[str],
    *,
    what: str,
    timeout: float,
    interval: float = 1.0,
    accept: Callable[[Result], bool] = lambda r: r.ok,
    clock: Callable[[], float] = time.monotonic,
) -> Result:
    """Run ``argv`` on ``transport`` until ``accept`` says yes."""
    deadline = clock() + timeout
    last: Result | None = None
    while True:
        last = await transport.run(argv, step=f"wait for {what}", check=False, timeout=30)
        if accept(last):
            return last
        if clock() >= deadline:
            answer = (last.stderr or last.stdout).strip().splitlines()[-3:]
            raise OperationError(
                f"{transport.host}: {what} not reached within {timeout:.0f} s; last answer "
                f"(status {last.status}): {' | '.join(answer) or '(none)'}"
            )
        await asyncio.sleep(interval)


async def etcd_healthy(t: Transport, timeout: float = 120) -> None:
    await until(t, etcdctl("endpoint", "health", "--cluster"), what="etcd quorum", timeout=timeout)


async def apiserver_ready(t: Transport, site: Site, timeout: float = 180) -> None:
    server = f"https://127.0.0.1:{site.api.apiserver_port}"
    await until(
        t,
        kubectl("get", "--raw=/readyz", server=server),
        what="kube-apiserver /readyz",
        timeout=timeout,
    )


async def vip_ready(t: Transport, timeout: float = 60) -> None:
    await until(t, kubectl("get", "--raw=/readyz"), what="/readyz through the VIP", timeout=timeout)


def node_conditions(doc: dict[str, Any]) -> dict[str, bool]:
    """Node name -> Ready, from `kubectl get nodes -o json`."""
    out = {}
    for item in doc.get("items", []):
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in item.get("status", {}).get("conditions", [])
        )
        out[item["metadata"]["name"]] = ready
    return out


async def nodes_ready(t: Transport, names: Sequence[str], timeout: float = 240) -> None:
    def accept(r: Result) -> bool:
        if not r.ok:
            return False
        ready = node_conditions(json.loads(r.stdout))
        return all(ready.get(n, False) for n in names)

    await until(
        t,
        kubectl("get", "nodes", "-o", "json"),
        what=f"nodes {', '.join(names)} Ready",
        timeout=timeout,
        interval=2,
        accept=accept,
    )


async def nodes_registered(t: Transport, names: Sequence[str], timeout: float = 180) -> None:
    def accept(r: Result) -> bool:
        return r.ok and set(names) <= set(node_conditions(json.loads(r.stdout)))

    await until(
        t,
        kubectl("get", "nodes", "-o", "json"),
        what=f"nodes {', '.join(names)} registered",
        timeout=timeout,
        interval=2,
        accept=accept,
    )


async def all_of(*gates: Awaitable[None]) -> None:
    await asyncio.gather(*gates)

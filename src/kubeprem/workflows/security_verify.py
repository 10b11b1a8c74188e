"""`kubeprem verify SITE --security`: the CIS-style items kubeprem owns,
checked on every machine (one constant fact script per host, pure
evaluation in ``kubeprem.security``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from kubeprem.security import CheckResult, evaluate, gather
from kubeprem.site.load import LoadedSite
from kubeprem.transport.base import Transport


async def security_results(
    loaded: LoadedSite, transports: Mapping[str, Transport]
) -> list[CheckResult]:
    site = loaded.site

    async def one(name: str) -> list[CheckResult]:
        machine = site.machine(name)
        facts = await gather(transports[name], site, machine)
        return evaluate(facts, site, machine)

    per_host = await asyncio.gather(*(one(m.name) for m in site.machines))
    return [r for results in per_host for r in results]

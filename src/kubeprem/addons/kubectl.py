"""Server-side apply of addon manifests with kubectl on a controller, over SSH.

Called by ``dns`` and ``smoke``; the same way as the apply workflow's cluster
objects: ``kubectl diff --server-side`` first, and ``kubectl apply
--server-side --field-manager=kubeprem`` only when it shows a difference, so a
converged cluster reports zero changes. Namespaces go first on their own:
the server-side diff of objects in a namespace that does not exist yet fails.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kubeprem.errors import OperationError
from kubeprem.transport.base import Transport
from kubeprem.workflows import gates
from kubeprem.yamltext import dump_yaml

Obj = dict[str, Any]
FIELD_MANAGER = "kubeprem"


def changed_objects(diff_output: str) -> int:
    """How many objects a ``kubectl diff`` output shows (one ``diff -u -N`` each)."""
    return sum(1 for line in diff_output.splitlines() if line.startswith("diff "))


async def apply_objects(t: Transport, objects: Sequence[Obj], what: str) -> int:
    """Apply ``objects`` if they differ from the cluster; the number changed."""
    namespaces = [o for o in objects if o.get("kind") == "Namespace"]
    rest = [o for o in objects if o.get("kind") != "Namespace"]
    changes = 0
    for part in (namespaces, rest):
        if part:
            changes += await _apply_text(t, dump_yaml(*part), what)
    return changes


async def _apply_text(t: Transport, text: str, what: str) -> int:
    common = ["--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-"]
    d = await t.run(
        gates.kubectl("diff", *common), step=f"diff {what}", stdin=text.encode(), check=False
    )
    if d.status == 0:
        return 0
    if d.status != 1:
        raise OperationError(
            f"{t.host}: kubectl diff of {what} failed (status {d.status}): "
            f"{d.stderr.strip()[-300:]}"
        )
    await t.run(
        gates.kubectl("apply", "--force-conflicts", *common),
        step=f"apply {what}",
        stdin=text.encode(),
    )
    return max(changed_objects(d.stdout), 1)


async def get_json(t: Transport, *args: str, step: str) -> Obj:
    r = await t.run(gates.kubectl("get", *args, "-o", "json"), step=step)
    doc: Obj = json.loads(r.stdout)
    return doc


async def rollout(t: Transport, kind: str, name: str, namespace: str, timeout: int) -> None:
    """Wait until the rollout of ``kind/name`` is complete (every replica updated
    and available); the error carries kubectl's last words."""
    r = await t.run(
        gates.kubectl(
            "rollout", "status", f"{kind}/{name}", "-n", namespace, f"--timeout={timeout}s"
        ),
        step=f"wait for {kind}/{name}",
        check=False,
        timeout=timeout + 30,
    )
    if not r.ok:
        raise OperationError(
            f"{t.host}: {kind} {namespace}/{name} not rolled out within {timeout} s: "
            f"{(r.stderr or r.stdout).strip()[-300:]}"
        )

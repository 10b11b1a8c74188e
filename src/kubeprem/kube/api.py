"""The Kubernetes API seam: the small interface every caller uses, and its errors.

Two implementations ship: ``HttpKubeAPI`` (``kubeprem.kube.http``, the real
API over TLS with the client certificate of a kubeconfig) and ``FakeKubeAPI``
(``kubeprem.kube.fake``, in memory, for unit tests of the apps workflows).
The interface is synchronous; async code calls it with ``asyncio.to_thread``.
Objects are plain JSON-like dicts, as the API sends them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kubeprem.errors import OperationError

Obj = dict[str, Any]
FIELD_MANAGER = "kubeprem"


class KubeError(OperationError):
    """The API refused or failed a request. Names kind, namespace, name,
    the HTTP status (None when no answer came) and the API's own message."""

    def __init__(
        self,
        verb: str,
        kind: str,
        name: str | None,
        namespace: str | None,
        status: int | None,
        message: str,
        reason: str = "",
    ) -> None:
        self.verb = verb
        self.kind = kind
        self.name = name
        self.namespace = namespace
        self.status = status
        self.reason = reason
        self.api_message = message
        where = kind
        if namespace:
            where += f" {namespace}/{name or '*'}"
        elif name:
            where += f" {name}"
        got = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"{verb} {where}: {got}{f' {reason}' if reason else ''}: {message}")


class KubeAPI(Protocol):
    """What kubeprem needs from the API server; nothing more."""

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        """The object, or None when it does not exist."""
        ...

    def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[Obj]:
        """Objects of ``kind`` (in ``namespace``, or cluster-wide), each with its kind set."""
        ...

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> Obj:
        """Server-side apply as field manager ``kubeprem`` (force); the stored object.
        With ``dry_run`` the server validates and admits but stores nothing."""
        ...

    def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete (foreground for workloads); False when it did not exist."""
        ...

    def close(self) -> None: ...


__all__ = ["FIELD_MANAGER", "KubeAPI", "KubeError", "Obj"]

"""``kubectl exec`` on the operator's machine: what the small API client does not do.

Exec needs a streaming protocol (SPDY or WebSocket) that ``HttpKubeAPI``
deliberately leaves out; kubectl has it. Called by the failover workflow to
ask a Sentinel who the Redis primary is. Argument lists only; a failure
becomes a ``KubeError`` naming the pod and the end of kubectl's stderr.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from kubeprem.kube.api import KubeError


def kubectl_exec(
    kubeconfig: Path,
    namespace: str,
    pod: str,
    argv: Sequence[str],
    *,
    container: str | None = None,
    timeout: float = 20.0,
) -> str:
    """Run ``argv`` in ``pod``; its standard output."""
    cmd = ["kubectl", "--kubeconfig", str(kubeconfig), "-n", namespace, "exec", pod]
    if container:
        cmd += ["-c", container]
    cmd += ["--", *argv]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KubeError("exec", "Pod", pod, namespace, None, str(exc)) from exc
    if done.returncode != 0:
        raise KubeError(
            "exec",
            "Pod",
            pod,
            namespace,
            None,
            f"{argv[0]} exited {done.returncode}: {done.stderr.strip()[-300:]}",
        )
    return done.stdout


__all__ = ["kubectl_exec"]

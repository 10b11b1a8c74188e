"""One long build command: output to a log, a heartbeat while it runs, and
its whole process group stopped when the caller is interrupted.

Used by the Debian-source and the Go-module builders."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def run_logged(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    beat: Callable[[], None],
    every: float,
) -> int:
    """Run ``argv`` with stdout and stderr into ``log``; call ``beat`` every
    ``every`` seconds until it ends; return its exit status. On any
    exception (Ctrl-C, SIGTERM through the CLI) the command and every child
    it started (its own process group) get SIGTERM before this returns."""
    with open(log, "w", encoding="utf-8") as out:
        out.write("$ " + " ".join(argv) + "\n")
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while True:
                try:
                    return proc.wait(timeout=every)
                except subprocess.TimeoutExpired:
                    beat()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise


def elapsed(start: float) -> str:
    """Minutes and seconds since ``start`` (a ``time.monotonic()`` value)."""
    s = int(time.monotonic() - start)
    return f"{s // 60}m{s % 60:02d}s"


def last_lines(log: Path, n: int = 1) -> str:
    """The last ``n`` non-empty lines of ``log``, joined by " | "."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])

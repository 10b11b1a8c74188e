"""kubeprem's command line: parse arguments, call a workflow, print.

Each command group lives in its own module with a ``register(sub)`` function
that adds its sub-parsers and sets ``handler`` to a function taking the
parsed arguments and returning an exit status; a handler may be ``async``,
and then it is run to completion (never silently skipped). Expected errors
(``KubepremError``) become one line on stderr and their exit status; the
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence

from rich.markup import escape

from kubeprem import __version__
from kubeprem.cli import (
    app_cmds,
    artifacts_cmds,
    audit_cmds,
    cluster_cmds,
    day2_cmds,
    images_cmds,
    lab_cmds,
    monitoring_cmds,
    pki_cmds,
    render_cmds,
    site_cmds,
    storage_cmds,
)
from kubeprem.cli.common import console_err
from kubeprem.errors import KubepremError

GROUPS = (
    site_cmds,
    pki_cmds,
    render_cmds,
    cluster_cmds,
    app_cmds,
    storage_cmds,
    lab_cmds,
    artifacts_cmds,
    images_cmds,
    audit_cmds,
    monitoring_cmds,
    day2_cmds,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeprem",
        description=(
            "Highly-available Kubernetes on your own machines, the hard way: "
            "own PKI, etcd with mutual TLS, control plane behind a virtual IP, "
            "pushed over SSH with a plan shown before acting."
        ),
        epilog="Exit status: 0 success, 1 the operation failed, 2 bad input (nothing changed).",
    )
    parser.add_argument("--version", action="version", version=f"kubeprem {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so that every cleanup on the way
    out runs: a build stops its compilers, an atomic write removes its
    temporary file, a lock is released."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        result = handler(args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except KubepremError as exc:
        if args.debug:
            traceback.print_exc()
        console_err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return exc.exit_status
    except Terminated:
        console_err.print("terminated")
        # the cleanups ran; now end as SIGTERM ends a process (status 143),
        # through the handler that was there before (a caller's, or the default)
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        previous = None
        os.kill(os.getpid(), signal.SIGTERM)
        return 143
    except KeyboardInterrupt:
        console_err.print("interrupted")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

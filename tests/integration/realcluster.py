"""Run rendered components as plain processes on loopback addresses.

The integration tier starts the real programs (etcd, kube-apiserver,
HAProxy) from the files ``kubeprem render`` wrote, on 127.0.0.x addresses of
this machine. Paths in the rendered ExecStart lines are re-rooted into the
render folder; everything else is used exactly as rendered, except that
loopback listeners every member would share (127.0.0.1:2379, the metrics
port) are dropped because here all members share one network namespace.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kubeprem.site import example_text

LOOPBACK_SITE = (
    example_text()
    .replace("node_cidr: 10.240.0.0/24", "node_cidr: 127.0.0.0/24")
    .replace("10.240.0.", "127.0.0.")
    .replace("name: kubeprem ", "name: loopback ")
)


def artifact_cache() -> Path:
    """The cached set of the example's release (what `./run test` prepares)."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kubeprem"
    version = re.search(r'kubernetes_version: "([0-9.]+)"', LOOPBACK_SITE)
    assert version is not None
    return base / "artifacts" / version[1]


def artifact(name: str) -> Path | None:
    """A binary from the artifact cache (`kubeprem artifacts`), if built."""
    manifest = artifact_cache() / "manifest.json"
    if not manifest.exists():
        return None
    files = json.loads(manifest.read_text())["files"]
    if name not in files:
        return None
    return artifact_cache() / files[name]["path"]


def exec_start(unit_text: str) -> list[str]:
    """The ExecStart argument list of a rendered unit (systemd quoting)."""
    joined = unit_text.replace("\\\n", " ")
    for line in joined.splitlines():
        if line.startswith("ExecStart="):
            argv = shlex.split(line.removeprefix("ExecStart="))
            return [a.replace("$$", "$").replace("%%", "%") for a in argv]
    raise AssertionError("no ExecStart in unit")


def reroot(argv: list[str], root: Path, extra: dict[str, str]) -> list[str]:
    out = []
    for arg in argv:
        for old, new in extra.items():
            arg = arg.replace(old, new)
        for prefix in ("/etc/kubernetes", "/etc/haproxy", "/var/log/kubernetes"):
            arg = arg.replace(prefix, f"{root}{prefix}")
        out.append(arg)
    return out


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextmanager
def processes() -> Iterator[Callable[[list[str], Path], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        fh = open(log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.terminate()
        for proc in started:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def etcd_argv(out: Path, member: str, data: Path, first: bool) -> list[str]:
    unit = (out / member / "etc/systemd/system/etcd.service").read_text()
    argv = reroot(exec_start(unit), out / member, {"/var/lib/etcd": str(data)})
    etcd = artifact("etcd") or Path(shutil.which("etcd") or "/usr/bin/etcd")
    argv[0] = str(etcd)
    fixed = []
    for a in argv:
        if a.startswith("--listen-client-urls="):
            urls = [u for u in a.split("=", 1)[1].split(",") if "//127.0.0.1:" not in u or first]
            a = "--listen-client-urls=" + ",".join(urls)
        if a.startswith("--listen-metrics-urls=") and not first:
            continue
        fixed.append(a)
    return fixed

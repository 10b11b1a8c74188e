"""Built image archives imported into a real containerd, and run.

Starts Debian's containerd as a background process with its own root, state
and socket in a temporary folder (no systemd needed, the host's containerd,
if any, is untouched), imports the pause and busybox archives with
``ctr -n k8s.io images import`` as apply does on nodes, checks ``ctr images
ls`` shows the digests the builder recorded, and runs each once.

The Debian-based images (debootstrap, then apt-get in a chroot: about 70 s
for the base plus 5-40 s per image) are built and imported too when
KUBEPREM_TEST_BIG_IMAGES=1.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeprem.errors import PrerequisiteError
from kubeprem.images import ImageArchive, build_images

pytestmark = pytest.mark.integration

BIG = os.environ.get("KUBEPREM_TEST_BIG_IMAGES") == "1"


def _need(*programs: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("containerd needs root")
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (deps/images.txt)")


class Containerd:
    """A containerd of our own, reached with ``ctr -a SOCKET``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "c.sock"
        config = folder / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{folder}/root"\n'
            f'state = "{folder}/state"\n'
            # no CRI plugin: this test talks to containerd directly, no CNI needed
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            f'[ttrpc]\n  address = "{self.socket}.ttrpc"\n'
        )
        self.log = (folder / "containerd.log").open("w")
        self.proc = subprocess.Popen(
            ["containerd", "--config", str(config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while self.ctr("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"containerd did not start: {self.log_tail()}")
            time.sleep(0.2)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["ctr", "-a", str(self.socket), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and res.returncode != 0:
            pytest.fail(f"ctr {' '.join(args)} exited {res.returncode}: {res.stderr[-2000:]}")
        return res

    def log_tail(self) -> str:
        return (self.folder / "containerd.log").read_text()[-2000:]

    def images(self) -> dict[str, str]:
        """ref -> manifest digest, from `ctr images ls`."""
        lines = self.ctr("images", "ls").stdout.splitlines()[1:]
        return {f[0]: f[2] for f in (line.split() for line in lines) if len(f) >= 3}

    def stop(self) -> None:
        # shims of containers we ran carry our socket in their arguments
        for pid in _pids_mentioning(str(self.socket)):
            if pid != self.proc.pid:
                os.kill(pid, signal.SIGKILL)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        for target in sorted((m.split()[1] for m in mounts), reverse=True):
            if target.startswith(str(self.folder) + "/"):
                subprocess.run(["umount", "-l", target], check=False)


def _pids_mentioning(text: str) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            out.append(int(proc.name))
    return out


@pytest.fixture
def containerd() -> Iterator[Containerd]:
    _need("containerd", "ctr", "runc")
    # a short path: unix socket paths are limited to 108 bytes
    folder = Path(tempfile.mkdtemp(prefix="kp-ctrd-", dir="/tmp"))
    c = Containerd(folder)
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _build(names: list[str], cache: Path | None) -> list[ImageArchive]:
    try:
        return build_images(names, cache=cache)
    except PrerequisiteError as exc:
        pytest.skip(f"cannot build {', '.join(names)} here: {exc}")


def _import_and_check(containerd: Containerd, archives: list[ImageArchive]) -> None:
    for a in archives:
        containerd.ctr("images", "import", str(a.path))
    listed = containerd.images()
    for a in archives:
        assert listed.get(a.ref) == a.digest, f"{a.ref}: ctr images ls shows {listed.get(a.ref)}"


def _run(containerd: Containerd, ref: str, name: str, *argv: str) -> str:
    res = containerd.ctr("run", "--rm", ref, name, *argv, check=False)
    if res.returncode != 0:
        pytest.skip(
            f"imports checked, but this host cannot run containers: `ctr run` exited "
            f"{res.returncode}: {res.stderr.strip()[-500:]}"
        )
    return res.stdout


def test_pause_and_busybox_import_and_run(containerd: Containerd, tmp_path: Path) -> None:
    _need("gcc", "debootstrap")
    archives = _build(["pause", "busybox"], tmp_path / "cache")
    # the same inputs give the same archives, byte for byte
    again = _build(["pause", "busybox"], tmp_path / "cache2")
    for a, b in zip(archives, again, strict=True):
        assert (a.digest, a.config_digest) == (b.digest, b.config_digest)
        assert a.path.read_bytes() == b.path.read_bytes()

    _import_and_check(containerd, archives)
    pause, busybox = archives
    # the sandbox image containerd names for the newest release (no site given)
    assert pause.ref == "registry.k8s.io/pause:3.10.2"

    out = _run(containerd, busybox.ref, "kp-busybox", "/bin/busybox", "echo", "hello from busybox")
    assert out.strip() == "hello from busybox"
    out = _run(containerd, pause.ref, "kp-pause", "/pause", "-v")
    assert out.startswith("pause.c v")


@pytest.mark.skipif(not BIG, reason="set KUBEPREM_TEST_BIG_IMAGES=1 (debootstrap + 8 images)")
def test_debian_images_import_share_the_base_and_run(containerd: Containerd) -> None:
    _need("debootstrap", "chroot")
    names = [
        "redis",
        "postgresql",
        "haproxy",
        "node-exporter",
        "redis-exporter",
        "postgres-exporter",
        "prometheus",
        "alertmanager",
    ]
    archives = _build(names, None)  # the default cache (KUBEPREM_IMAGES_CACHE), reused
    _import_and_check(containerd, archives)
    # one base layer, stored once by containerd
    blobs = containerd.ctr("content", "ls", "-q").stdout.split()
    assert len(blobs) == len(set(blobs))

    by_name = {a.name: a for a in archives}
    checks = {
        "redis": (["/usr/bin/redis-server", "--version"], "v=7.0.15"),
        "postgresql": (["/usr/bin/patroni", "--version"], "patroni 3.0.2"),
        "haproxy": (["/usr/sbin/haproxy", "-v"], "HAProxy version 2.6"),
        "node-exporter": (["/usr/bin/prometheus-node-exporter", "--version"], "1.5.0"),
        "prometheus": (["/usr/bin/prometheus", "--version"], "2.42.0"),
    }
    for name, (argv, expected) in checks.items():
        res = containerd.ctr("run", "--rm", by_name[name].ref, f"kp-{name}", *argv, check=False)
        assert expected in res.stdout + res.stderr, f"{name}: {res.stdout} {res.stderr}"

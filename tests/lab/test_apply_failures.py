"""Apply under failure on real lab machines (section 6 of the apply issue).

One lab cluster for the whole module (cluster kpf-<hex>, subnet 10.252.0.0/24),
brought up here and torn down at the end even when a test fails. The tests
run in file order, from bare machines to a converged cluster:

1. apply without --yes and without a terminal: exit 2, nothing on any machine;
2. a wrong SSH key: exit 1, one line naming the host and the key;
3. a machine powered off, and a machine with a wrong address: exit 1, one line
   naming it, nothing written on the machines that answered;
4. a write that fails in the middle of the etcd phase (a directory where
   etcd's unit file goes): exit 1 with host, step, command, status and
   stderr; no half-written file; once the directory is gone apply converges;
5. apply killed with SIGKILL while it writes binaries: no half-written file,
   the temporaries it left are removed by the rerun, which converges.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeprem.site import LoadedSite, example_text, load_site
from tests.lab.conftest import require_lab_host

pytestmark = pytest.mark.lab

KUBEPREM = str(Path(sys.executable).parent / "kubeprem")
SUBNET = "10.252.0."
ETCD_UNIT = "/etc/systemd/system/etcd.service"
WORKER_BINARIES = ("kubelet", "kube-proxy", "containerd")
MANAGED_DIRS = ("/etc/kubernetes", "/etc/systemd/system", "/usr/local/bin", "/opt/cni/bin")


def kubeprem(
    *args: str, timeout: float = 900, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBEPREM, *args], capture_output=True, text=True, timeout=timeout, stdin=stdin, check=False
    )


def on(loaded: LoadedSite, machine: str, *command: str) -> subprocess.CompletedProcess[str]:
    return kubeprem("lab", "ssh", str(loaded.path), machine, "--", *command, timeout=120)


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error")]


def temporaries(loaded: LoadedSite, machine: str) -> list[str]:
    script = 'find "$@" -maxdepth 1 -name ".*.kubeprem-*" 2>/dev/null; true'
    out = on(loaded, machine, "sh", "-c", script, "find-temps", *MANAGED_DIRS).stdout
    return [line for line in out.splitlines() if line.strip()]


def plan_json(loaded: LoadedSite) -> dict[str, list[dict[str, object]]]:
    proc = kubeprem("plan", str(loaded.path), "--json")
    assert proc.returncode == 0, proc.stderr
    hosts: dict[str, list[dict[str, object]]] = json.loads(proc.stdout)["hosts"]
    return hosts


def nothing_of_kubeprem(loaded: LoadedSite, machine: str) -> bool:
    r = on(loaded, machine, "sh", "-c", "ls /etc/kubernetes /var/lib/etcd 2>/dev/null | wc -l")
    return r.returncode == 0 and r.stdout.strip() == "0"


@pytest.fixture(scope="module")
def lab() -> Iterator[LoadedSite]:
    require_lab_host()
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"kpf-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    name = folder.name
    text = example_text().replace("  name: kubeprem ", f"  name: {name} ", 1)
    text = text.replace("10.240.0.", SUBNET)
    (folder / "site.yaml").write_text(text)
    loaded = load_site(folder / "site.yaml")
    try:
        up = kubeprem("lab", "up", str(loaded.path))
        assert up.returncode == 0, up.stderr
        yield loaded
    finally:
        kubeprem("lab", "down", str(loaded.path))


def test_apply_without_yes_and_without_terminal_is_refused(lab: LoadedSite) -> None:
    proc = kubeprem("apply", str(lab.path))
    assert proc.returncode == 2, proc.stderr
    assert "--yes" in proc.stderr
    assert not (lab.state_dir / "pki").exists(), "refused before anything is created locally"
    for m in lab.site.machines:
        assert nothing_of_kubeprem(lab, m.name)


def test_wrong_ssh_key_is_a_clear_error(lab: LoadedSite, tmp_path: Path) -> None:
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    site = tmp_path / "site.yaml"
    text = lab.path.read_text().replace("  # key: ~/.ssh/id_ed25519", f"  key: {key}", 1)
    site.write_text(text)
    # the same cluster name, machines and PKI: only the key differs
    (tmp_path / ".kubeprem").symlink_to(lab.path.parent / ".kubeprem")
    proc = kubeprem("apply", str(site), "--yes")
    assert proc.returncode == 1, proc.stderr
    errors = error_lines(proc)
    assert len(errors) == 1, proc.stderr
    assert "login refused" in errors[0] and str(key) in errors[0]
    for m in lab.site.machines:
        assert nothing_of_kubeprem(lab, m.name)


def test_powered_off_machine_stops_the_plan_before_acting(lab: LoadedSite) -> None:
    assert kubeprem("lab", "poweroff", str(lab.path), "worker-2").returncode == 0
    try:
        proc = kubeprem("apply", str(lab.path), "--yes")
        assert proc.returncode == 1, proc.stderr
        errors = error_lines(proc)
        assert len(errors) == 1, proc.stderr
        assert "worker-2" in errors[0] and f"{SUBNET}22" in errors[0]
        assert "nothing was changed" in errors[0]
        for m in lab.site.machines:
            if m.name != "worker-2":
                assert nothing_of_kubeprem(lab, m.name)
    finally:
        assert kubeprem("lab", "start", str(lab.path), "worker-2").returncode == 0


def test_wrong_address_stops_the_plan_before_acting(lab: LoadedSite, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(lab.path.read_text().replace(f"address: {SUBNET}21", f"address: {SUBNET}99"))
    (tmp_path / ".kubeprem").symlink_to(lab.path.parent / ".kubeprem")
    proc = kubeprem("apply", str(site), "--yes")
    assert proc.returncode == 1, proc.stderr
    errors = error_lines(proc)
    assert len(errors) == 1 and "worker-1" in errors[0] and f"{SUBNET}99" in errors[0]
    for m in lab.site.machines:
        assert nothing_of_kubeprem(lab, m.name)


def test_failure_in_the_middle_of_a_phase_then_rerun_converges(lab: LoadedSite) -> None:
    # a directory where etcd's unit file must go: the atomic rename fails
    # files the OS already ships (Debian's haproxy.cfg) differ before any apply
    shipped = {
        (h, c.get("path"))
        for h, cs in plan_json(lab).items()
        for c in cs
        if c.get("why") == "content"
    }
    blocker = on(lab, "controller-1", "mkdir", "-p", f"{ETCD_UNIT}/in-the-way")
    assert blocker.returncode == 0, blocker.stderr
    proc = kubeprem("apply", str(lab.path), "--yes")
    assert proc.returncode == 1, proc.stderr
    message = proc.stderr
    for part in ("controller-1", f"`sftp-put {ETCD_UNIT}` failed: "):
        assert part in message, message
    # nothing half-written: every managed file present is complete (a plan shows
    # only files to create, never one whose content is wrong)
    for host, changes in plan_json(lab).items():
        wrong = [
            c
            for c in changes
            if c.get("why") == "content"
            and (host, c.get("path")) not in shipped
            and c.get("path") != ETCD_UNIT
        ]
        assert not wrong, f"{host}: files with other content after the failure: {wrong}"
        assert not temporaries(lab, host), host

    assert on(lab, "controller-1", "rm", "-r", ETCD_UNIT).returncode == 0
    again = kubeprem("apply", str(lab.path), "--yes")
    assert again.returncode == 0, again.stderr
    assert all(not changes for changes in plan_json(lab).values())


# Waits on a machine until one of kubeprem's temporary files appears in the
# binaries folder (a write under way), prints it and exits; gives up after 300 s.
WATCH_WRITE = r"""
i=0
while [ $i -lt 6000 ]; do
  f=$(find /usr/local/bin -maxdepth 1 -name '.*.kubeprem-*' -print -quit)
  [ -n "$f" ] && { echo "$f"; exit 0; }
  sleep 0.05
  i=$((i + 1))
done
echo timeout
"""


def kill_apply_while_writing(lab: LoadedSite) -> None:
    """Remove the workers' binaries, start apply, SIGKILL it as soon as a
    worker shows a write under way (its temporary file)."""
    paths = [f"/usr/local/bin/{b}" for b in WORKER_BINARIES]
    for w in lab.site.workers:
        assert on(lab, w.name, "rm", "-f", *paths).returncode == 0
    watched = lab.site.workers[0].name
    watcher = subprocess.Popen(
        [KUBEPREM, "lab", "ssh", str(lab.path), watched, "--", "sh", "-c", WATCH_WRITE],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(1)  # the watcher is looking before apply starts
    child = subprocess.Popen(
        [KUBEPREM, "apply", str(lab.path), "--yes"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert watcher.stdout is not None
        seen = watcher.stdout.readline().strip()
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
        watcher.wait(timeout=60)
    assert seen != "timeout", f"apply wrote no binary on {watched} within 300 s"
    assert child.returncode == -signal.SIGKILL


def test_sigkill_while_writing_then_rerun_converges(lab: LoadedSite) -> None:
    # The kill lands mid-write almost always; when every write had just
    # finished, the case is tried again (at most three times).
    for _ in range(3):
        kill_apply_while_writing(lab)
        for host, changes in plan_json(lab).items():
            assert all(c.get("why") != "content" for c in changes), (host, changes)
        left = {w.name: temporaries(lab, w.name) for w in lab.site.workers}
        if any(left.values()):
            break
    # the kill did interrupt writes: their temporaries are there, the targets not
    assert any(left.values()), "no write was under way when apply was killed"
    again = kubeprem("apply", str(lab.path), "--yes")
    assert again.returncode == 0, again.stderr
    for name, temps in left.items():
        if temps:
            assert f"{name}: removed" in again.stderr
    for m in lab.site.machines:
        assert not temporaries(lab, m.name), m.name
    assert all(not changes for changes in plan_json(lab).values())

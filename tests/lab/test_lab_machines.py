"""`kubeprem lab up|down|ssh|status|poweroff|start` on real systemd-nspawn
machines: the init topology boots, answers SSH with the site's key, is
healthy, is kept by a second `lab up`, and `lab down` leaves nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kubeprem.cli.main import main
from kubeprem.lab import host
from kubeprem.lab.layout import plan_lab
from kubeprem.lab.machines import lab_root, lab_status
from kubeprem.site import LoadedSite

pytestmark = pytest.mark.lab


def run_cli(*args: str) -> int:
    return main(list(args))


def on_machine(loaded: LoadedSite, name: str, *command: str) -> subprocess.CompletedProcess[str]:
    """A command over `kubeprem lab ssh` in a child process, output captured."""
    kubeprem = Path(sys.executable).parent / "kubeprem"
    return subprocess.run(
        [str(kubeprem), "lab", "ssh", str(loaded.path), name, "--", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def leftovers(loaded: LoadedSite) -> list[str]:
    """What of this lab is still on the host."""
    plan = plan_lab(loaded.site, lab_root())
    found = []
    units = {m.unit for m in plan.machines}
    procs = host.nspawn_processes(host.processes())
    found += [f"process {u}" for u in units if u in procs]
    found += [f"mount {m}" for m in host.mounts_under(plan.lab_dir)]
    found += [f"link {link.name}" for link in host.links() if link.name == plan.bridge]
    if host.nft_has_table(plan.table):
        found.append(f"nftables table {plan.table}")
    if plan.lab_dir.exists():
        found.append(f"folder {plan.lab_dir}")
    for d in Path("/sys/fs/cgroup").glob("**/kubeprem-lab/kp-" + plan.cluster + "-*"):
        found.append(f"cgroup {d}")
    return found


def assert_healthy(loaded: LoadedSite, name: str) -> None:
    proc = on_machine(loaded, name, "systemctl", "is-system-running")
    state = proc.stdout.strip()
    if state != "running":
        failed = on_machine(loaded, name, "systemctl", "--failed", "--no-legend").stdout
        pytest.fail(f"{name}: systemctl is-system-running says {state!r}; failed units:\n{failed}")


def test_lab_up_ssh_twice_and_down(
    lab_site: LoadedSite, capsys: pytest.CaptureFixture[str]
) -> None:
    site = str(lab_site.path)
    names = [m.name for m in lab_site.site.machines]
    assert len(names) == 6

    assert run_cli("lab", "up", site) == 0
    out = capsys.readouterr().out
    for m in lab_site.site.machines:
        assert m.name in out and str(m.address) in out

    for name in names:
        assert_healthy(lab_site, name)
        hostname = on_machine(lab_site, name, "hostname").stdout.strip()
        assert hostname == name
    # the command's exit status comes back; arguments survive quoting
    assert on_machine(lab_site, "worker-0", "sh", "-c", "exit 7").returncode == 7
    assert on_machine(lab_site, "worker-0", "echo", "a b", "$HOME").stdout == "a b $HOME\n"
    # machines reach each other on eth0; cgroup controllers are writable
    ping = on_machine(
        lab_site, "worker-0", "ping", "-c1", "-W2", str(lab_site.site.machines[0].address)
    )
    assert ping.returncode == 0, ping.stdout + ping.stderr
    rw = on_machine(
        lab_site,
        "worker-1",
        "sh",
        "-c",
        "mkdir /sys/fs/cgroup/pids/t && rmdir /sys/fs/cgroup/pids/t",
    )
    assert rw.returncode == 0, rw.stderr
    ids = {on_machine(lab_site, n, "cat", "/etc/machine-id").stdout for n in names}
    assert len(ids) == len(names)

    before = {s.name: s.pid1 for s in lab_status(lab_site)}
    assert run_cli("lab", "up", site) == 0  # a no-op: the same machines keep running
    after = {s.name: s.pid1 for s in lab_status(lab_site)}
    assert before == after

    assert run_cli("lab", "status", site) == 0
    assert run_cli("lab", "down", site) == 0
    assert leftovers(lab_site) == []


def test_lab_up_recovers_from_a_killed_lab(lab_site: LoadedSite) -> None:
    site = str(lab_site.path)
    assert run_cli("lab", "up", site) == 0
    # a power cut of one machine, then `lab start` boots it from its disk
    on_machine(lab_site, "worker-2", "sh", "-c", "echo kept > /root/mark")
    assert run_cli("lab", "poweroff", site, "worker-2") == 0
    states = {s.name: s.state for s in lab_status(lab_site)}
    assert states["worker-2"] == "stopped"
    assert run_cli("lab", "start", site, "worker-2") == 0
    assert on_machine(lab_site, "worker-2", "cat", "/root/mark").stdout == "kept\n"

    # every machine killed abruptly, one copy unmounted: bridge, rules,
    # cgroups and copies are left behind, as after a killed lab
    plan = plan_lab(lab_site.site, lab_root())
    procs = host.nspawn_processes(host.processes())
    for m in plan.machines:
        nspawn_pid, pid1 = procs[m.unit]
        host.stop_machine(nspawn_pid, pid1, grace=0)
    host.unmount_all(plan.machine("controller-1").root)
    assert {s.state for s in lab_status(lab_site)} == {"stopped"}

    assert run_cli("lab", "up", site) == 0
    for m in plan.machines:
        assert_healthy(lab_site, m.name)
    assert on_machine(lab_site, "worker-2", "cat", "/root/mark").stdout == "kept\n"
    assert run_cli("lab", "down", site) == 0
    assert leftovers(lab_site) == []


def test_lab_up_refuses_a_foreign_bridge(
    lab_site: LoadedSite, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_lab(lab_site.site, lab_root())
    subprocess.run(["ip", "link", "add", plan.bridge, "type", "bridge"], check=True)
    try:
        assert run_cli("lab", "up", str(lab_site.path)) == 2
        err = capsys.readouterr().err
        assert "is taken by something that is not this lab" in err
        assert "Traceback" not in err
        # `lab down` leaves a bridge that is not ours alone
        assert run_cli("lab", "down", str(lab_site.path)) == 0
        assert any(link.name == plan.bridge for link in host.links())
    finally:
        subprocess.run(["ip", "link", "delete", plan.bridge], check=False)

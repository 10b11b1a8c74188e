"""kubeprem's engine against ansible-core's copy and systemd modules: the same
file distribution and the same service restarts on the same lab machines
(section 7 of the apply issue), written to bench/results/ansible_compare.json.

What is compared, on every machine of the site, in parallel over all hosts:

- the files: every file kubeprem renders for the machine (configuration,
  units, certificates and keys, kubeconfigs; the lab's in-container variant),
  without the binaries, each with its mode. Both tools write them under a
  scratch root (``--root``, default /var/tmp/kpcmp) so that the cluster's own
  files are not touched, with the same relative paths;
- the restarts: every systemd unit the machine's components run (etcd,
  kube-apiserver, kubelet, ...), restarted when that machine's files changed;
- cold: the scratch root removed on every machine first (not timed), so every
  file is written and every unit restarted; warm: a second run right after,
  every file present and equal, so nothing is written and nothing restarted.

ansible side: one play, `gather_facts: false`, forks = number of hosts,
pipelining on, SSH ControlPersist (ansible's default), one
``ansible.builtin.copy`` task of the machine's tree (``mode: preserve``) and
one ``ansible.builtin.systemd`` task (``state: restarted``) looping over the
machine's units when the copy changed. kubeprem side: its plan/apply engine
(one facts round trip per host, the pure diff, the executor with its drift
check, SFTP atomic writes, restarts of the units whose files changed), run as
its own process like ansible-playbook. Each timing is the wall time of that
process. After ansible's cold run, kubeprem's plan must find zero changes (the
files ansible wrote are equal, modes included): the two did the same work.

ansible-core comes from PyPI in a venv of its own (``--ansible-venv``, e.g.
/tmp/ansible-venv; never a project dependency). The targets need Python with
its standard library: the lab's python3-minimal lacks modules ansible's
copy imports (shutil), so ``--debs DIR`` installs the .deb files of DIR on
every machine first, not timed (on the operator: ``apt-get download
libpython3.11-stdlib media-types libreadline8 readline-common libsqlite3-0``).

Usage: .venv/bin/python bench/ansible_compare.py SITE [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from lab_up import machine

from kubeprem.components.base import File, Rendered, RenderOptions
from kubeprem.pki.store import ensure_pki
from kubeprem.plan.diff import diff, wanted
from kubeprem.site.load import LoadedSite, load_site
from kubeprem.workflows.apply import gather_every_host
from kubeprem.workflows.desired import desired_state
from kubeprem.workflows.execute import execute
from kubeprem.workflows.hosts import connected, round_trips

RESULTS = Path(__file__).parent / "results" / "ansible_compare.json"

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: the machine's files
      ansible.builtin.copy:
        src: "{{ tree }}/{{ inventory_hostname }}/"
        dest: "{{ root }}/"
        mode: preserve
      register: files
    - name: restart the machine's units when its files changed
      ansible.builtin.systemd:
        name: "{{ item }}"
        state: restarted
      loop: "{{ units }}"
      when: files.changed
"""


def desired(loaded: LoadedSite, root: str) -> dict[str, list[Rendered]]:
    """Each machine's components without binaries, their files moved under root."""
    _, bundle = ensure_pki(loaded, datetime.now(UTC))
    options = {m.name: RenderOptions(in_container=True) for m in loaded.site.machines}
    out: dict[str, list[Rendered]] = {}
    for host, rendered in desired_state(loaded.site, bundle, None, options).items():
        out[host] = [
            Rendered(
                r.component,
                tuple(File(root + f.path, f.content, f.mode, f.secret) for f in r.files),
                r.services,
                tuple(root + p for p in r.reads),
            )
            for r in rendered
        ]
    return out


def units_of(rendered: list[Rendered]) -> list[str]:
    return list(dict.fromkeys(s for r in rendered for s in r.services))


async def engine(loaded: LoadedSite, root: str) -> dict[str, Any]:
    """kubeprem's side: facts, diff, execute; what it changed."""
    want = desired(loaded, root)
    async with connected(loaded) as transports:
        facts = await gather_every_host(transports, {h: wanted(r) for h, r in want.items()})
        plan = diff(want, facts)
        restarted: list[str] = []
        if not plan.empty:
            summary = await execute(plan, transports)
            restarted = [f"{h}:{s}" for h, r in summary.hosts.items() for s in r.services_restarted]
        trips = round_trips(transports)
    return {"changes": plan.total(), "restarted": len(restarted), "round_trips": trips}


def write_ansible_files(
    loaded: LoadedSite, want: dict[str, list[Rendered]], work: Path, root: str
) -> None:
    tree = work / "tree"
    if tree.exists():
        shutil.rmtree(tree)
    for host, rendered in want.items():
        for r in rendered:
            for f in r.files:
                local = tree / host / f.path[len(root) :].lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(f.content)
                local.chmod(f.mode)
    state = loaded.state_dir / "ssh"
    lines = ["[all]"]
    for m in loaded.site.machines:
        units = json.dumps(units_of(want[m.name])).replace(" ", "")
        lines.append(f"{m.name} ansible_host={m.address} units='{units}'")
    lines += [
        "",
        "[all:vars]",
        "ansible_user=root",
        f"ansible_ssh_private_key_file={state / 'id_ed25519'}",
        f"ansible_ssh_common_args='-o UserKnownHostsFile={state / 'known_hosts'} -o StrictHostKeyChecking=yes'",
        "ansible_python_interpreter=/usr/bin/python3",
        f"tree={tree}",
        f"root={root}",
    ]
    (work / "inventory.ini").write_text("\n".join(lines) + "\n")
    (work / "play.yml").write_text(PLAYBOOK)
    (work / "ansible.cfg").write_text(
        "[defaults]\n"
        f"forks = {len(loaded.site.machines)}\n"
        "host_key_checking = True\n"
        "retry_files_enabled = False\n"
        "[ssh_connection]\n"
        "pipelining = True\n"
    )


def ssh_options(loaded: LoadedSite) -> list[str]:
    state = loaded.state_dir / "ssh"
    known = f"UserKnownHostsFile={state / 'known_hosts'}"
    return ["-i", str(state / "id_ed25519"), "-o", known, "-o", "BatchMode=yes"]


def install_debs(loaded: LoadedSite, debs: list[Path]) -> None:
    names = [f"/tmp/{d.name}" for d in debs]
    for m in loaded.site.machines:
        targets = [f"root@[{m.address}]:/tmp/"]
        subprocess.run(["scp", "-q", *ssh_options(loaded), *map(str, debs), *targets], check=True)
    on_every_machine(loaded, "dpkg", "-i", *names)
    on_every_machine(loaded, "rm", "-f", *names)


def on_every_machine(loaded: LoadedSite, *command: str) -> None:
    procs = [
        subprocess.Popen(
            ["ssh", *ssh_options(loaded), f"root@{m.address}", "--", *command],
            stdout=subprocess.DEVNULL,
        )
        for m in loaded.site.machines
    ]
    for p in procs:
        if p.wait(timeout=120) != 0:
            raise SystemExit(f"{' '.join(command)} failed on a machine")


def timed(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
        check=False,
        cwd=cwd,
    )
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return elapsed, proc.stdout


def run_kubeprem(site: str, root: str) -> dict[str, Any]:
    wall, out = timed([sys.executable, __file__, "_engine", site, "--root", root])
    return {"wall_s": round(wall, 2), **json.loads(out)}


def run_ansible(venv: Path, work: Path) -> dict[str, Any]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(work / "ansible.cfg")}
    argv = [
        str(venv / "bin" / "ansible-playbook"),
        "-i",
        str(work / "inventory.ini"),
        str(work / "play.yml"),
    ]
    wall, out = timed(argv, env, work)
    recap = {
        h: {"changed": int(c), "ok": int(o)}
        for h, o, c in re.findall(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)", out, re.M)
    }
    restarts = len(re.findall(r"^changed: \[[^\]]+\] => \(item=", out, re.M))
    return {"wall_s": round(wall, 2), "recap": recap, "restarted": restarts}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="compare", choices=("compare", "_engine"))
    parser.add_argument("site")
    parser.add_argument("--root", default="/var/tmp/kpcmp")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--ansible-venv", type=Path, default=Path("/tmp/ansible-venv"))
    parser.add_argument("--debs", type=Path, help="install these .deb files on every machine first")
    args = parser.parse_args()
    root = posixpath.normpath(args.root)
    loaded = load_site(Path(args.site))
    if args.mode == "_engine":
        print(json.dumps(asyncio.run(engine(loaded, root))))
        return 0
    if not (args.ansible_venv / "bin" / "ansible-playbook").exists():
        print(
            f"no ansible-playbook in {args.ansible_venv}: pip install ansible-core there",
            file=sys.stderr,
        )
        return 2
    version = subprocess.run(
        [str(args.ansible_venv / "bin" / "ansible"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[0]
    if args.debs:
        install_debs(loaded, sorted(args.debs.glob("*.deb")))
    work = Path(f"/tmp/kpcmp-{loaded.site.cluster.name}")
    work.mkdir(parents=True, exist_ok=True)
    want = desired(loaded, root)
    write_ansible_files(loaded, want, work, root)
    files = {h: sum(len(r.files) for r in rs) for h, rs in want.items()}
    size = sum(len(f.content) for rs in want.values() for r in rs for f in r.files)
    record: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "ansible": version,
        "compared": {
            "root": root,
            "files_per_host": files,
            "bytes_total": size,
            "units_per_host": {h: units_of(rs) for h, rs in want.items()},
        },
        "runs": [],
    }
    for i in range(max(1, min(args.runs, 5))):
        run: dict[str, Any] = {"load_at_start": load()}
        on_every_machine(loaded, "rm", "-rf", "--", root)
        run["kubeprem_cold"] = run_kubeprem(args.site, root)
        run["kubeprem_warm"] = run_kubeprem(args.site, root)
        on_every_machine(loaded, "rm", "-rf", "--", root)
        run["ansible_cold"] = run_ansible(args.ansible_venv, work)
        run["ansible_warm"] = run_ansible(args.ansible_venv, work)
        # the same result: kubeprem finds nothing to change after ansible's run
        check = run_kubeprem(args.site, root)
        run["kubeprem_changes_after_ansible"] = check["changes"]
        run["load_at_end"] = load()
        record["runs"].append(run)
        print(f"run {i + 1}: {json.dumps(run)}", file=sys.stderr)
        save(record, first=i == 0)  # a run of ~10 min under load: kept as soon as done
    on_every_machine(loaded, "rm", "-rf", "--", root)
    print(json.dumps({k: v for k, v in record.items() if k != "runs"}, indent=2))
    return 0


def save(record: dict[str, Any], *, first: bool) -> None:
    """Append the record (first run) or replace it (later runs), with the best
    wall times over its runs and their ratio."""
    for state in ("cold", "warm"):
        k = min(r[f"kubeprem_{state}"]["wall_s"] for r in record["runs"])
        a = min(r[f"ansible_{state}"]["wall_s"] for r in record["runs"])
        record[f"best_{state}"] = {"kubeprem_s": k, "ansible_s": a, "ratio": round(a / k, 1)}
    doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"records": []}
    if first:
        doc["records"].append(record)
    else:
        doc["records"][-1] = record
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())

"""`kubeprem backup`: an etcd snapshot plus the PKI, on the operator's machine.

Called by the backup command, by the restore scenario of `verify --chaos`
and by the lab tests. Steps:

1. find a healthy etcd member (``etcdctl endpoint health`` on each, in site
   order) and take ``etcdctl snapshot save`` there, into a temporary file;
2. check it with ``etcdctl snapshot status`` (hash, revision, keys);
3. read it back over SSH (base64 on stdout, checked against the remote
   SHA-256) and remove the temporary file;
4. write ``.kubeprem/<cluster>/backups/<UTC time>/``: ``etcd-snapshot.db``,
   ``pki.tar.gz`` (certificates, keys, kubeconfigs and the encryption
   config: the keys that decrypt the snapshot's Secrets) and
   ``backup.json`` (what was taken, where, and its checks). Mode 0700/0600.

The scheduled snapshots (a systemd timer on every etcd member, default every
6 hours, keeping 10) are rendered by ``timer_files`` and installed with
``install_timer`` through the same plan/execute path as apply.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kubeprem.components import paths
from kubeprem.components.base import File, Rendered
from kubeprem.components.systemd import unit
from kubeprem.errors import OperationError
from kubeprem.pki.store import pki_dir, write_atomic
from kubeprem.plan.diff import diff, wanted
from kubeprem.plan.facts import gather_all
from kubeprem.plan.model import Plan
from kubeprem.site.load import LoadedSite
from kubeprem.site.model import Site
from kubeprem.transport.base import Transport
from kubeprem.workflows import gates
from kubeprem.workflows.execute import ApplySummary, execute

REMOTE_TMP = "/var/lib/kubeprem/backup"
SNAPSHOT_NAME = "etcd-snapshot.db"
PKI_ARCHIVE = "pki.tar.gz"
MANIFEST = "backup.json"

# scheduled snapshots on the members
TIMER_SCRIPT = "/usr/local/lib/kubeprem/etcd-snapshot.sh"
TIMER_SERVICE = "kubeprem-etcd-snapshot.service"
TIMER_UNIT = "kubeprem-etcd-snapshot.timer"
TIMER_DIR = "/var/backups/kubeprem/etcd"
DEFAULT_EVERY_HOURS = 6
DEFAULT_KEEP = 10

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class SnapshotStatus:
    hash: int
    revision: int
    total_keys: int
    total_size: int


@dataclass(frozen=True)
class Backup:
    folder: Path
    snapshot: Path
    member: str
    taken_at: str
    sha256: str
    status: SnapshotStatus

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "snapshot": str(self.snapshot),
            "member": self.member,
            "taken_at": self.taken_at,
            "sha256": self.sha256,
            "status": asdict(self.status),
        }


def parse_snapshot_status(output: str) -> SnapshotStatus:
    """``etcdctl snapshot status FILE -w json`` -> its four numbers."""
    try:
        doc = json.loads(output)
        return SnapshotStatus(
            int(doc["hash"]), int(doc["revision"]), int(doc["totalKey"]), int(doc["totalSize"])
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise OperationError(
            f"etcdctl snapshot status: unexpected answer {output[:200]!r}"
        ) from exc


def stamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")


def backups_dir(loaded: LoadedSite) -> Path:
    return loaded.state_dir / "backups"


async def healthy_member(site: Site, transports: Mapping[str, Transport]) -> str:
    """The first etcd member (site order) whose local endpoint answers healthy."""
    answers = []
    for m in site.etcd_members:
        t = transports.get(m.name)
        if t is None:
            continue
        try:
            r = await t.run(
                gates.etcdctl("endpoint", "health"),
                step="etcd endpoint health",
                check=False,
                timeout=20,
            )
        except OperationError as exc:
            answers.append(f"{m.name}: {exc}")
            continue
        if r.ok:
            return m.name
        answers.append(f"{m.name}: {(r.stderr or r.stdout).strip()[-120:]}")
    raise OperationError("no healthy etcd member to take a snapshot from: " + "; ".join(answers))


async def fetch_file(t: Transport, path: str, *, step: str) -> bytes:
    """A remote file's bytes over the command channel (base64), checked by SHA-256."""
    r = await t.run(["base64", "-w0", path], step=step, timeout=300)
    try:
        data = base64.b64decode(r.stdout.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise OperationError(f"{t.host}: {step}: the file came back garbled") from exc
    s = await t.run(["sha256sum", path], step=f"{step} (checksum)")
    remote = s.stdout.split()[0] if s.stdout.split() else ""
    if hashlib.sha256(data).hexdigest() != remote:
        raise OperationError(f"{t.host}: {step}: checksum differs after the copy; retry")
    return data


def pki_archive(folder: Path) -> bytes:
    """The PKI state folder as a gzip'd tar (paths relative to it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buf.getvalue()


async def take_backup(
    loaded: LoadedSite,
    transports: Mapping[str, Transport],
    now: datetime,
    *,
    say: Say = _quiet,
) -> Backup:
    site = loaded.site
    member = await healthy_member(site, transports)
    t = transports[member]
    name = stamp(now)
    remote = f"{REMOTE_TMP}/snapshot-{name}.db"
    say(f"snapshot on {member}")
    await t.run(["install", "-d", "-m", "0700", REMOTE_TMP], step="create backup folder")
    try:
        await t.run(
            gates.etcdctl("snapshot", "save", remote),
            step="etcdctl snapshot save",
            timeout=300,
        )
        st = await t.run(
            [gates.snapshot_tool(site), "snapshot", "status", remote, "-w", "json"],
            step="snapshot status",
        )
        status = parse_snapshot_status(st.stdout)
        say(f"snapshot checked: revision {status.revision}, {status.total_keys} keys")
        data = await fetch_file(t, remote, step="copy snapshot to the operator's machine")
    finally:
        await t.run(["rm", "-f", remote], step="remove temporary snapshot", check=False)
    folder = backups_dir(loaded) / name
    n = 1
    while folder.exists():
        n += 1
        folder = backups_dir(loaded) / f"{name}-{n}"
    folder.mkdir(mode=0o700, parents=True)
    backups_dir(loaded).chmod(0o700)
    snapshot = folder / SNAPSHOT_NAME
    write_atomic(snapshot, data, 0o600)
    write_atomic(folder / PKI_ARCHIVE, pki_archive(pki_dir(loaded)), 0o600)
    backup = Backup(
        folder=folder,
        snapshot=snapshot,
        member=member,
        taken_at=now.isoformat(),
        sha256=hashlib.sha256(data).hexdigest(),
        status=status,
    )
    manifest = {"cluster": site.cluster.name, **backup.to_dict()}
    write_atomic(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode(), 0o600)
    return backup


def list_backups(loaded: LoadedSite) -> list[Path]:
    """Backup folders, oldest first."""
    root = backups_dir(loaded)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / SNAPSHOT_NAME).is_file())


def resolve_snapshot(loaded: LoadedSite, given: str) -> Path:
    """SNAPSHOT as given: a snapshot file, a backup folder, or ``latest``."""
    if given == "latest":
        found = list_backups(loaded)
        if not found:
            raise OperationError(f"no backups in {backups_dir(loaded)}; run `kubeprem backup`")
        return found[-1] / SNAPSHOT_NAME
    p = Path(given).expanduser()
    if p.is_dir():
        p = p / SNAPSHOT_NAME
    if not p.is_file():
        candidate = backups_dir(loaded) / given / SNAPSHOT_NAME
        if candidate.is_file():
            return candidate
        raise OperationError(f"{given}: no such snapshot file or backup folder")
    return p


# -- scheduled snapshots -------------------------------------------------------------


def timer_script(keep: int, status_tool: str = gates.ETCDCTL) -> str:
    e = gates.etcdctl("snapshot", "save", '"$tmp"')
    save = " ".join(a if a == '"$tmp"' else f"'{a}'" for a in e)
    return "\n".join(
        [
            "#!/bin/sh",
            f"# kubeprem: scheduled etcd snapshot; keeps the newest {keep} in {TIMER_DIR}",
            "set -eu",
            f"dir={TIMER_DIR}",
            'mkdir -p "$dir"',
            'chmod 0700 "$dir"',
            'name="snapshot-$(date -u +%Y%m%dT%H%M%SZ).db"',
            'tmp="$dir/.$name.part"',
            "trap 'rm -f \"$tmp\"' EXIT",
            save,
            f"'{status_tool}' snapshot status \"$tmp\" -w json >/dev/null",
            'mv "$tmp" "$dir/$name"',
            "trap - EXIT",
            f'ls -1t "$dir"/snapshot-*.db | tail -n +{keep + 1} | xargs -r rm -f --',
            "",
        ]
    )


def timer_files(
    every_hours: int = DEFAULT_EVERY_HOURS,
    keep: int = DEFAULT_KEEP,
    status_tool: str = gates.ETCDCTL,
) -> Rendered:
    """The script, service and timer of scheduled snapshots (for an etcd member)."""
    if every_hours < 1 or keep < 1:
        raise OperationError("snapshot schedule: every_hours and keep must be at least 1")
    svc_path, svc = unit(
        TIMER_SERVICE,
        "kubeprem: etcd snapshot",
        ["/bin/sh", TIMER_SCRIPT],
        after=("etcd.service",),
        wants=(),
        service_type="oneshot",
        limit_nofile=None,
    )
    # A timer has no [Service]; only its unit file is rendered here.
    timer = "\n".join(
        [
            "[Unit]",
            f"Description=kubeprem: etcd snapshot every {every_hours} h",
            "",
            "[Timer]",
            f"OnCalendar=*-*-* 00/{every_hours}:00:00",
            "RandomizedDelaySec=5min",
            "Persistent=true",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )
    return Rendered(
        component="etcd-snapshot",
        files=(
            File.text(TIMER_SCRIPT, timer_script(keep, status_tool), 0o755),
            File.text(svc_path, svc),
            File.text(f"{paths.UNIT_DIR}/{TIMER_UNIT}", timer),
        ),
        services=(TIMER_UNIT,),
    )


async def install_timer(
    site: Site,
    transports: Mapping[str, Transport],
    *,
    every_hours: int = DEFAULT_EVERY_HOURS,
    keep: int = DEFAULT_KEEP,
) -> ApplySummary | None:
    """Write the timer to every etcd member and enable it; only what differs."""
    rendered = timer_files(every_hours, keep, gates.snapshot_tool(site))
    desired: dict[str, Sequence[Rendered]] = {m.name: [rendered] for m in site.etcd_members}
    facts = await gather_all(
        {h: transports[h] for h in desired}, {h: wanted(r) for h, r in desired.items()}
    )
    plan: Plan = diff(desired, facts)
    if plan.empty:
        return None
    return await execute(plan, transports)

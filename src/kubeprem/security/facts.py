"""What the security checks need to know about a host: one command, a pure parser.

Called by the verify workflow (``gather``); the parser and ``wanted`` are
pure. The remote command is a constant POSIX ``sh`` script; paths, process
names and units travel as positional arguments
(``sh -c SCRIPT kubeprem-security STAT... -- PROC... -- READ... -- UNIT...``)
and are never formatted into the script.

Output (one marker line per section)::

    @@kubeprem security 1
    @@kubeprem virt                 "container <systemd-detect-virt -c>", "container-file <...>"
    @@kubeprem stat <path>          "missing" or "<octal mode> <user> <group> <type>"
    @@kubeprem proc <name>          one line per process: "<pid> <base64 of /proc/PID/cmdline>"
    @@kubeprem content <path>       base64 of the file ("@@kubeprem content-missing <path>")
    @@kubeprem nft <status>         `nft list table inet kubeprem` and its exit status
                                    ("@@kubeprem nft missing" without nft)
    @@kubeprem service <unit>       "enabled <is-enabled>", "active <is-active>"
    @@kubeprem end

Processes are found by their ``comm`` (the first 15 bytes of the program
name), so only the machine's own PID namespace is seen. Files are only
stat'ed, never read, except the ``READ`` ones (non-secret configuration such
as the kubelet's).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from kubeprem.components import apiserver, etcd, firewall, kubelet, paths
from kubeprem.errors import OperationError
from kubeprem.plan.facts import split_sections
from kubeprem.site.model import Machine, Site
from kubeprem.transport.base import Transport

MARK = "@@kubeprem"
FORMAT_VERSION = "1"

SCRIPT = r"""
PATH="$PATH:/usr/sbin:/sbin"
mark() { printf '@@kubeprem %s\n' "$*"; }
say() { printf '%s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
mark security 1
mark virt
if have systemd-detect-virt; then say "container $(systemd-detect-virt --container 2>/dev/null)"; fi
if [ -r /run/systemd/container ]; then say "container-file $(cat /run/systemd/container)"; fi
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  mark stat "$1"
  if [ -e "$1" ] || [ -L "$1" ]; then say "$(stat -c '%a %U %G %F' -- "$1" 2>/dev/null)"; else say missing; fi
  shift
done
[ $# -gt 0 ] && shift
names=" "
while [ $# -gt 0 ] && [ "$1" != -- ]; do names="$names$1 "; mark proc "$1"; shift; done
[ $# -gt 0 ] && shift
for d in /proc/[0-9]*; do
  comm=$(cat "$d/comm" 2>/dev/null) || continue
  case "$names" in
    *" $comm "*)
      line=$(base64 < "$d/cmdline" 2>/dev/null | tr -d '\n')
      [ -n "$line" ] && say "@@kubeprem cmdline $comm ${d#/proc/} $line";;
  esac
done
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  if [ -f "$1" ] && [ -r "$1" ]; then mark content "$1"; base64 < "$1"; else mark content-missing "$1"; fi
  shift
done
[ $# -gt 0 ] && shift
if have nft; then
  out=$(nft list table inet kubeprem 2>&1); status=$?
  mark nft "$status"; printf '%s\n' "$out"
else
  mark nft missing
fi
for unit in "$@"; do
  mark service "$unit"
  if have systemctl; then
    say "enabled $(systemctl is-enabled -- "$unit" 2>/dev/null | head -n 1)"
    say "active $(systemctl is-active -- "$unit" 2>/dev/null | head -n 1)"
  fi
done
mark end
"""


# What the script looks for, by comm: at most 15 bytes of the program name.
PROCESSES = {"kube-apiserver": "kube-apiserver", "etcd": "etcd", "kubelet": "kubelet"}


@dataclass(frozen=True)
class FileStat:
    mode: int | None
    owner: str | None
    group: str | None
    kind: str

    @property
    def directory(self) -> bool:
        return self.kind == "directory"


@dataclass(frozen=True)
class Nft:
    """``nft list table inet kubeprem``: status None when nft is missing."""

    status: int | None
    text: str = ""

    @property
    def loaded(self) -> bool:
        return self.status == 0


@dataclass(frozen=True)
class SecurityFacts:
    host: str
    container: str | None = None
    files: Mapping[str, FileStat | None] = field(default_factory=dict)  # None: missing
    processes: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    contents: Mapping[str, str | None] = field(default_factory=dict)  # None: missing
    nft: Nft = Nft(None)
    services: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # enabled, active

    def process(self, name: str) -> tuple[tuple[str, ...], ...]:
        return self.processes.get(name, ())


@dataclass(frozen=True)
class Wanted:
    """What to ask one host for."""

    stat: tuple[str, ...]
    processes: tuple[str, ...]
    read: tuple[str, ...]
    units: tuple[str, ...]


def expected_files(site: Site, machine: Machine) -> dict[str, tuple[str, ...]]:
    """Paths by kind ("keys", "kubeconfigs", "certificates", "config") for this machine.

    Mirrors ``components.pki_files`` (a unit test holds them together) plus the
    units and configuration of the services the checks cover.
    """
    keys: list[str] = []
    kubeconfigs: list[str] = []
    certs: list[str] = []
    config = [firewall.RULESET, f"{paths.UNIT_DIR}/{firewall.SERVICE}"]
    if machine.has("control-plane"):
        keys += [
            paths.CA_KEY,
            paths.APISERVER_KEY,
            paths.APISERVER_KUBELET_CLIENT_KEY,
            paths.APISERVER_ETCD_CLIENT_KEY,
            paths.FRONT_PROXY_CLIENT_KEY,
            paths.SA_KEY,
            paths.CONTROLLER_MANAGER_SERVING_KEY,
            paths.SCHEDULER_SERVING_KEY,
        ]
        if site.encryption.at_rest:
            keys.append(paths.ENCRYPTION_CONFIG)
        kubeconfigs += [paths.ADMIN_CONF, paths.CONTROLLER_MANAGER_CONF, paths.SCHEDULER_CONF]
        certs += [
            paths.CA_CRT,
            paths.APISERVER_CRT,
            paths.APISERVER_KUBELET_CLIENT_CRT,
            paths.APISERVER_ETCD_CLIENT_CRT,
            paths.FRONT_PROXY_CA_CRT,
            paths.FRONT_PROXY_CLIENT_CRT,
            paths.SA_PUB,
            paths.ETCD_CA_CRT,
            paths.CONTROLLER_MANAGER_SERVING_CRT,
            paths.SCHEDULER_SERVING_CRT,
        ]
        config.append(f"{paths.UNIT_DIR}/{apiserver.SERVICE}")
    if machine.has("etcd"):
        keys += [paths.ETCD_SERVER_KEY, paths.ETCD_PEER_KEY, paths.ETCD_HEALTHCHECK_CLIENT_KEY]
        certs += [
            paths.ETCD_CA_CRT,
            paths.ETCD_SERVER_CRT,
            paths.ETCD_PEER_CRT,
            paths.ETCD_HEALTHCHECK_CLIENT_CRT,
        ]
        config.append(f"{paths.UNIT_DIR}/{etcd.SERVICE}")
    if machine.has("worker"):
        keys += [paths.KUBELET_SERVING_KEY, paths.KUBELET_CLIENT_KEY]
        kubeconfigs += [paths.KUBELET_CONF, paths.KUBE_PROXY_CONF]
        certs += [paths.CA_CRT, paths.KUBELET_SERVING_CRT, paths.KUBELET_CLIENT_CRT]
        config += [paths.KUBELET_CONFIG, f"{paths.UNIT_DIR}/{kubelet.SERVICE}"]
    if machine.has("lb"):
        keys.append(paths.HAPROXY_HEALTHCHECK_PEM)

    def unique(items: list[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(items))

    return {
        "keys": unique(keys),
        "kubeconfigs": unique(kubeconfigs),
        "certificates": unique(certs),
        "config": unique(config),
    }


def wanted(site: Site, machine: Machine) -> Wanted:
    files = expected_files(site, machine)
    stat = [p for group in files.values() for p in group]
    procs: list[str] = []
    read: list[str] = []
    if machine.has("etcd"):
        stat.append(paths.ETCD_DATA)
        procs.append(PROCESSES["etcd"])
    if machine.has("control-plane"):
        procs.append(PROCESSES["kube-apiserver"])
    if machine.has("worker"):
        procs.append(PROCESSES["kubelet"])
        read.append(paths.KUBELET_CONFIG)
    return Wanted(tuple(dict.fromkeys(stat)), tuple(procs), tuple(read), (firewall.SERVICE,))


def command(want: Wanted) -> list[str]:
    for p in (*want.stat, *want.read):
        if not p.startswith("/") or "\n" in p:
            raise ValueError(f"paths are absolute and on one line: {p!r}")
    for name in (*want.processes, *want.units):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]*", name):
            raise ValueError(f"not a process or unit name: {name!r}")
    return [
        "sh",
        "-c",
        SCRIPT,
        "kubeprem-security",
        *want.stat,
        "--",
        *want.processes,
        "--",
        *want.read,
        "--",
        *want.units,
    ]


def _stat(lines: list[str]) -> FileStat | None:
    words = " ".join(lines).split()
    if not words or words == ["missing"]:
        return None
    mode = int(words[0], 8) if re.fullmatch(r"[0-7]{1,4}", words[0]) else None
    return FileStat(
        mode=mode,
        owner=words[1] if len(words) > 1 else None,
        group=words[2] if len(words) > 2 else None,
        kind=" ".join(words[3:]) or "unknown",
    )


def _argv(b64: str) -> tuple[str, ...] | None:
    try:
        raw = base64.b64decode(b64, validate=True)
    except ValueError:
        return None
    return tuple(a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0"))


def parse(host: str, output: str) -> SecurityFacts:
    """Pure: the script's stdout to ``SecurityFacts``; refuses output cut short."""
    sections = split_sections(output)
    if not sections or sections[0][:2] != ("security", FORMAT_VERSION):
        raise OperationError(f"{host}: security facts do not start with '{MARK} security 1'")
    if sections[-1][0] != "end":
        raise OperationError(f"{host}: security facts are cut short (no '{MARK} end')")
    container: str | None = None
    files: dict[str, FileStat | None] = {}
    procs: dict[str, list[tuple[str, ...]]] = {}
    contents: dict[str, str | None] = {}
    nft = Nft(None)
    services: dict[str, tuple[str, str]] = {}
    for name, arg, lines in sections:
        if name == "virt":
            for line in lines:
                key, _, value = line.partition(" ")
                value = value.strip()
                if key in ("container", "container-file") and value not in ("", "none"):
                    container = container or value
        elif name == "stat" and arg:
            files[arg] = _stat(lines)
        elif name == "proc" and arg:
            procs.setdefault(arg, [])
        elif name == "cmdline" and arg:
            parts = arg.split(" ")
            if len(parts) == 3:
                argv = _argv(parts[2])
                if argv is not None:
                    procs.setdefault(parts[0], []).append(argv)
        elif name == "content" and arg:
            try:
                contents[arg] = base64.b64decode("".join(lines), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                contents[arg] = None
        elif name == "content-missing" and arg:
            contents[arg] = None
        elif name == "nft":
            status = int(arg) if arg and arg.isdigit() else None
            nft = Nft(status, "\n".join(lines))
        elif name == "service" and arg:
            info = dict(line.partition(" ")[::2] for line in lines)
            services[arg] = (
                info.get("enabled", "").strip() or "unknown",
                info.get("active", "").strip() or "unknown",
            )
    return SecurityFacts(
        host=host,
        container=container,
        files=files,
        processes={k: tuple(v) for k, v in procs.items()},
        contents=contents,
        nft=nft,
        services=services,
    )


async def gather(
    transport: Transport, site: Site, machine: Machine, *, timeout: float | None = 60.0
) -> SecurityFacts:
    """One round trip: everything ``evaluate`` needs about ``machine``."""
    result = await transport.run(
        command(wanted(site, machine)), step="gather security facts", timeout=timeout
    )
    return parse(transport.host, result.stdout)


__all__ = [
    "FileStat",
    "Nft",
    "SecurityFacts",
    "Wanted",
    "command",
    "expected_files",
    "gather",
    "parse",
    "wanted",
]

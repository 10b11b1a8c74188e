"""Facts about one host: one command, one round trip, and a pure parser.

Called by the plan and apply workflows (``gather_facts``) and by the
executor's drift check (``gather_file_facts``). The remote command is a
constant POSIX ``sh`` script; paths and service names travel as positional
arguments (``sh -c SCRIPT kubeprem-facts MODE PATH... -- SERVICE...``) and
are never formatted into the script.

Output format (one marker line per section, then the section's lines)::

    @@kubeprem facts 1
    @@kubeprem os                 /etc/os-release, verbatim
    @@kubeprem arch               uname -m
    @@kubeprem init               "comm <PID 1's name>", "booted yes|no", "version <systemctl --version line 1>"
    @@kubeprem virt               "container <systemd-detect-virt -c>", "vm <systemd-detect-virt -v>", "container-file <...>"
    @@kubeprem clock              date +%s.%N (plain seconds where %N is unsupported)
    @@kubeprem swaps              /proc/swaps, verbatim
    @@kubeprem ports ss|proc      ss -ltnH, or /proc/net/tcp{,6} where ss is missing
    @@kubeprem kernel             "bridge yes|no", "br_netfilter yes|no", "overlay yes|no", "ip_forward <0|1|?>",
                                  "overlay-module yes|no|?", "br_netfilter-module yes|no|?" (modinfo finds one to load),
                                  "cgroupfs <stat -fc %T /sys/fs/cgroup>" (cgroup2fs: cgroup v2; tmpfs: v1 or hybrid)
    @@kubeprem versions           "<binary> <first line of --version>" for the installed kube-apiserver,
                                  kubelet and etcd in /usr/local/bin (paths.BIN_DIR); absent ones not listed
    @@kubeprem file <path>        "missing", or "sha256 <hex|unreadable>" and "stat <octal mode> <user> <group> <type>"
    @@kubeprem service <name>     "enabled <is-enabled>", "active <is-active>" (empty output: "unknown")
    @@kubeprem end

Mode ``files`` prints only the ``file`` sections (the executor's drift
check). A section whose tool is missing is present but empty or says
``unknown``; the parser turns that into ``None`` rather than failing.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from kubeprem.components.base import RenderOptions
from kubeprem.errors import OperationError
from kubeprem.transport.base import Transport

FORMAT_VERSION = "1"
MARK = "@@kubeprem"

# The script is a constant: nothing is ever formatted into it. "$1" is the
# mode; then paths up to "--"; then service names.
SCRIPT = r"""
mode=$1; shift
say() { printf '%s\n' "$*"; }
mark() { printf '@@kubeprem %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
mark facts 1
if [ "$mode" = full ]; then
  mark os; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
  mark arch; uname -m 2>/dev/null
  mark init
  say "comm $(cat /proc/1/comm 2>/dev/null)"
  if [ -d /run/systemd/system ]; then say "booted yes"; else say "booted no"; fi
  if have systemctl; then say "version $(systemctl --version 2>/dev/null | head -n 1)"; fi
  mark virt
  if have systemd-detect-virt; then
    say "container $(systemd-detect-virt --container 2>/dev/null)"
    say "vm $(systemd-detect-virt --vm 2>/dev/null)"
  fi
  if [ -r /run/systemd/container ]; then say "container-file $(cat /run/systemd/container)"; fi
  mark clock; date +%s.%N 2>/dev/null || date +%s
  mark swaps; cat /proc/swaps 2>/dev/null
  if have ss; then
    mark ports ss; ss -ltnH 2>/dev/null
  else
    mark ports proc; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null
  fi
  mark kernel
  if [ -d /proc/sys/net/bridge ]; then say "bridge yes"; else say "bridge no"; fi
  if [ -d /sys/module/br_netfilter ]; then say "br_netfilter yes"; else say "br_netfilter no"; fi
  if grep -qw overlay /proc/filesystems 2>/dev/null || [ -d /sys/module/overlay ]; then
    say "overlay yes"; else say "overlay no"; fi
  say "ip_forward $(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo '?')"
  say "cgroupfs $(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
  for m in overlay br_netfilter; do
    if have modinfo; then
      if modinfo -n "$m" >/dev/null 2>&1; then say "$m-module yes"; else say "$m-module no"; fi
    else say "$m-module ?"; fi
  done
  mark versions
  for b in kube-apiserver kubelet etcd; do
    if [ -x "/usr/local/bin/$b" ]; then say "$b $("/usr/local/bin/$b" --version 2>/dev/null | head -n 1)"; fi
  done
fi
# Digests are cached on the host, keyed by size, mtime, inode, ctime and
# device (as git's index does): a binary of 100 MB is hashed again only when
# it changed. Entries whose ctime is not at least 2 s old are not cached
# (a change within the same second would otherwise go unseen).
state=${KUBEPREM_STATE_DIR:-/var/lib/kubeprem}
cache=$state/digests
now=$(date +%s)
new=
if mkdir -p "$state" 2>/dev/null; then new=$(mktemp "$state/.digests.XXXXXX" 2>/dev/null) || new=; fi
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  mark file "$1"
  if [ -e "$1" ] || [ -L "$1" ]; then
    st=$(stat -L -c '%s:%Y:%i:%Z:%d' -- "$1" 2>/dev/null) || st=
    sum=
    if [ -n "$st" ] && [ -r "$cache" ]; then
      sum=$(awk -F '\t' -v p="$1" -v s="$st" '$3 == p && $1 == s { print $2; exit }' "$cache" 2>/dev/null)
    fi
    if [ -z "$sum" ]; then sum=$(sha256sum -- "$1" 2>/dev/null) && sum=${sum%% *} || sum=; fi
    if [ -n "$sum" ]; then
      say "sha256 $sum"
      ctime=${st#*:*:*:}; ctime=${ctime%%:*}
      if [ -n "$new" ] && [ -n "$st" ] && [ $((now - ctime)) -ge 2 ]; then
        printf '%s\t%s\t%s\n' "$st" "$sum" "$1" >> "$new"
      fi
    else
      say "sha256 unreadable"
    fi
    say "stat $(stat -c '%a %U %G %F' -- "$1" 2>/dev/null)"
  else
    say missing
  fi
  shift
done
if [ -n "$new" ]; then
  # keep the entries of paths not asked about this time: the drift check
  # asks only for the files a phase writes, and must not make the next
  # plan hash every binary again
  if [ -r "$cache" ]; then
    awk -F '\t' 'NR == FNR { seen[$3] = 1; next } !($3 in seen)' "$new" "$cache" > "$new.keep" 2>/dev/null \
      && cat "$new.keep" >> "$new"
    rm -f "$new.keep"
  fi
  chmod 600 "$new"; mv -f "$new" "$cache" 2>/dev/null || rm -f "$new"
fi
[ $# -gt 0 ] && shift
for unit in "$@"; do
  mark service "$unit"
  if have systemctl; then
    e=$(systemctl is-enabled -- "$unit" 2>/dev/null | head -n 1)
    a=$(systemctl is-active -- "$unit" 2>/dev/null | head -n 1)
  else
    e=; a=
  fi
  say "enabled ${e:-unknown}"
  say "active ${a:-unknown}"
done
mark end
"""

_MARK_RE = re.compile(r"^@@kubeprem ([a-z][a-z0-9-]*)(?: (.*))?$")


def _check_args(paths: Iterable[str], services: Iterable[str]) -> None:
    for p in paths:
        if not p.startswith("/") or "\n" in p or p == "--":
            raise ValueError(f"managed paths are absolute and on one line: {p!r}")
    for s in services:
        if not s or s.startswith("-") or "\n" in s or " " in s:
            raise ValueError(f"not a systemd unit name: {s!r}")


def facts_command(paths: Sequence[str], services: Sequence[str]) -> list[str]:
    """The full facts command for these managed files and services."""
    _check_args(paths, services)
    return ["sh", "-c", SCRIPT, "kubeprem-facts", "full", *paths, "--", *services]


def file_facts_command(paths: Sequence[str]) -> list[str]:
    """Only the ``file`` sections: the drift check before acting."""
    _check_args(paths, ())
    return ["sh", "-c", SCRIPT, "kubeprem-facts", "files", *paths, "--"]


@dataclass(frozen=True)
class FileFacts:
    """A managed path as it is. ``sha256`` is None when unreadable."""

    sha256: str | None
    mode: int | None
    owner: str | None = None
    group: str | None = None
    kind: str = "regular file"  # stat's %F: "symbolic link", "directory", ...

    @property
    def regular(self) -> bool:
        return self.kind in ("regular file", "regular empty file")


@dataclass(frozen=True)
class ServiceFacts:
    """``systemctl is-enabled`` / ``is-active`` words; "unknown" without systemctl."""

    enabled: str
    active: str


@dataclass(frozen=True)
class Listener:
    address: str
    port: int


@dataclass(frozen=True)
class Swap:
    device: str
    kind: str
    size_kib: int
    used_kib: int


@dataclass(frozen=True)
class Clock:
    """The host's clock and the operator's before and after asking for it."""

    host: float | None
    local_before: float | None = None
    local_after: float | None = None

    @property
    def offset(self) -> float | None:
        """Host minus operator, in seconds, against the round trip's midpoint."""
        if self.host is None or self.local_before is None or self.local_after is None:
            return None
        return self.host - (self.local_before + self.local_after) / 2

    @property
    def uncertainty(self) -> float | None:
        if self.local_before is None or self.local_after is None:
            return None
        return (self.local_after - self.local_before) / 2


@dataclass(frozen=True)
class Kernel:
    bridge: bool | None = None  # /proc/sys/net/bridge exists (br_netfilter active)
    br_netfilter: bool | None = None
    overlay: bool | None = None
    ip_forward: bool | None = None
    # modinfo finds a module (or a built-in one) for the running kernel: it
    # could be loaded. None: no modinfo on the host.
    overlay_module: bool | None = None
    br_netfilter_module: bool | None = None
    # the file system type of /sys/fs/cgroup: "cgroup2fs" (the unified v2
    # hierarchy) or "tmpfs" (cgroup v1 controllers, the hybrid layout included)
    cgroupfs: str | None = None

    @property
    def cgroup_v1(self) -> bool | None:
        """The kubelet would run on cgroup v1 controllers; None: not known."""
        if self.cgroupfs == "cgroup2fs":
            return False
        return True if self.cgroupfs == "tmpfs" else None

    @property
    def br_netfilter_loaded(self) -> bool | None:
        """br_netfilter is active: its module is listed, or its sysctls exist."""
        if self.bridge or self.br_netfilter:
            return True
        return None if self.bridge is None else False


@dataclass(frozen=True)
class HostFacts:
    """Everything one round trip tells about a host; ``None``: not known."""

    host: str
    os_id: str | None = None
    os_version: str | None = None
    arch: str | None = None
    pid1: str | None = None
    systemd: bool = False  # systemd is PID 1 (sd_booted: /run/systemd/system exists)
    systemd_version: int | None = None
    container: str | None = None  # "systemd-nspawn", "docker", ...; None: not a container
    vm: str | None = None  # "kvm", ...; None: bare metal or not known
    clock: Clock = field(default_factory=lambda: Clock(None))
    swaps: tuple[Swap, ...] = ()
    listeners: tuple[Listener, ...] | None = None
    kernel: Kernel = field(default_factory=Kernel)
    files: Mapping[str, FileFacts | None] = field(default_factory=dict)  # None: missing
    services: Mapping[str, ServiceFacts] = field(default_factory=dict)
    # installed binary -> its version ("1.36.3", "3.6.17"); only those present
    versions: Mapping[str, str] = field(default_factory=dict)

    @property
    def in_container(self) -> bool:
        return self.container is not None

    @property
    def swap_in_use(self) -> bool:
        return bool(self.swaps)

    def listening_ports(self) -> frozenset[int]:
        return frozenset(lst.port for lst in self.listeners or ())

    def render_options(self) -> RenderOptions:
        return RenderOptions(in_container=self.in_container, cgroup_v1=bool(self.kernel.cgroup_v1))


def split_sections(text: str) -> list[tuple[str, str | None, list[str]]]:
    """(name, argument, lines) per ``@@kubeprem NAME [ARG]`` marker; shared by
    every fact script kubeprem runs."""
    out: list[tuple[str, str | None, list[str]]] = []
    for line in text.splitlines():
        m = _MARK_RE.match(line)
        if m:
            out.append((m.group(1), m.group(2), []))
        elif out:
            out[-1][2].append(line)
    return out


def _words(lines: Iterable[str]) -> dict[str, str]:
    """``key value`` lines to a dict; a key without value maps to ""."""
    pairs: dict[str, str] = {}
    for line in lines:
        key, _, value = line.strip().partition(" ")
        if key:
            pairs[key] = value.strip()
    return pairs


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _virt(value: str | None) -> str | None:
    return None if not value or value in ("none", "unknown") else value


def _yes(value: str | None) -> bool | None:
    return {"yes": True, "no": False, "1": True, "0": False}.get(value or "")


def parse_os_release(lines: Iterable[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key] = _unquote(value)
    return values


def parse_swaps(lines: Sequence[str]) -> tuple[Swap, ...]:
    swaps = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[0] != "Filename" and parts[2].isdigit():
            used = int(parts[3]) if parts[3].isdigit() else 0
            swaps.append(Swap(parts[0], parts[1], int(parts[2]), used))
    return tuple(swaps)


def parse_ss(lines: Iterable[str]) -> tuple[Listener, ...]:
    """``ss -ltnH``: State Recv-Q Send-Q Local:Port Peer:Port [Process]."""
    found = []
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or parts[0] != "LISTEN":
            continue
        address, _, port = parts[3].rpartition(":")
        if port.isdigit():
            found.append(Listener(address.strip("[]"), int(port)))
    return tuple(found)


def parse_proc_net_tcp(lines: Iterable[str]) -> tuple[Listener, ...]:
    """/proc/net/tcp and tcp6: listeners have state 0A; addresses are hex."""
    found = []
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A" or ":" not in parts[1]:
            continue
        addr_hex, _, port_hex = parts[1].partition(":")
        try:
            port = int(port_hex, 16)
        except ValueError:
            continue
        if len(addr_hex) == 8:
            raw = bytes.fromhex(addr_hex)[::-1]
            address = ".".join(str(b) for b in raw)
        else:
            address = "*" if set(addr_hex) == {"0"} else addr_hex
        found.append(Listener(address, port))
    return tuple(found)


def _systemd_version(line: str | None) -> int | None:
    m = re.match(r"systemd (\d+)", line or "")
    return int(m.group(1)) if m else None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _file(lines: list[str]) -> FileFacts | None:
    info = _words(lines)
    if "missing" in info or not info:
        return None
    sha = info.get("sha256")
    stat = info.get("stat", "").split()
    mode = int(stat[0], 8) if stat and re.fullmatch(r"[0-7]{1,4}", stat[0]) else None
    return FileFacts(
        sha256=sha if sha and re.fullmatch(r"[0-9a-f]{64}", sha) else None,
        mode=mode,
        owner=stat[1] if len(stat) > 1 else None,
        group=stat[2] if len(stat) > 2 else None,
        kind=" ".join(stat[3:]) or "regular file",
    )


_VERSION_RE = re.compile(r"\bv?(\d+\.\d+\.\d+)\b")


def parse_versions(lines: Sequence[str]) -> dict[str, str]:
    """``kube-apiserver Kubernetes v1.36.3`` / ``etcd etcd Version: 3.6.17``
    -> binary: version. A binary whose output names no version is left out."""
    out: dict[str, str] = {}
    for line in lines:
        name, _, rest = line.strip().partition(" ")
        m = _VERSION_RE.search(rest)
        if name and m:
            out[name] = m.group(1)
    return out


def parse_facts(host: str, output: str) -> HostFacts:
    """Pure: the facts script's stdout to ``HostFacts``.

    Raises OperationError when the output is not the script's at all
    (no opening or closing marker): a truncated run must not pass for facts.
    """
    sections = split_sections(output)
    if not sections or sections[0][:2] != ("facts", FORMAT_VERSION):
        raise OperationError(f"{host}: facts output does not start with '{MARK} facts 1'")
    if sections[-1][0] != "end":
        raise OperationError(f"{host}: facts output is cut short (no '{MARK} end')")
    facts = HostFacts(host)
    files: dict[str, FileFacts | None] = {}
    services: dict[str, ServiceFacts] = {}
    for name, arg, lines in sections:
        if name == "os":
            release = parse_os_release(lines)
            facts = replace(
                facts, os_id=release.get("ID") or None, os_version=release.get("VERSION_ID")
            )
        elif name == "arch":
            facts = replace(facts, arch=lines[0].strip() if lines and lines[0].strip() else None)
        elif name == "init":
            info = _words(lines)
            facts = replace(
                facts,
                pid1=info.get("comm") or None,
                systemd=info.get("booted") == "yes",
                systemd_version=_systemd_version(info.get("version")),
            )
        elif name == "virt":
            info = _words(lines)
            container = _virt(info.get("container")) or _virt(info.get("container-file"))
            facts = replace(facts, container=container, vm=_virt(info.get("vm")))
        elif name == "clock":
            facts = replace(facts, clock=Clock(_float(lines[0].strip() if lines else None)))
        elif name == "swaps":
            facts = replace(facts, swaps=parse_swaps(lines))
        elif name == "ports":
            parsed = parse_ss(lines) if arg == "ss" else parse_proc_net_tcp(lines)
            facts = replace(facts, listeners=tuple(sorted(set(parsed), key=_listener_key)))
        elif name == "kernel":
            info = _words(lines)
            facts = replace(
                facts,
                kernel=Kernel(
                    bridge=_yes(info.get("bridge")),
                    br_netfilter=_yes(info.get("br_netfilter")),
                    overlay=_yes(info.get("overlay")),
                    ip_forward=_yes(info.get("ip_forward")),
                    overlay_module=_yes(info.get("overlay-module")),
                    br_netfilter_module=_yes(info.get("br_netfilter-module")),
                    cgroupfs=info.get("cgroupfs") or None,
                ),
            )
        elif name == "versions":
            facts = replace(facts, versions=parse_versions(lines))
        elif name == "file" and arg:
            files[arg] = _file(lines)
        elif name == "service" and arg:
            info = _words(lines)
            services[arg] = ServiceFacts(
                enabled=info.get("enabled") or "unknown", active=info.get("active") or "unknown"
            )
    return replace(facts, files=files, services=services)


def _listener_key(lst: Listener) -> tuple[int, str]:
    return (lst.port, lst.address)


async def gather_facts(
    transport: Transport,
    paths: Sequence[str],
    services: Sequence[str],
    *,
    clock: Callable[[], float] = time.time,
    timeout: float | None = 60.0,
) -> HostFacts:
    """One round trip: the full facts of ``transport.host``, with the clock offset."""
    argv = facts_command(paths, services)
    before = clock()
    result = await transport.run(argv, step="gather facts", timeout=timeout)
    after = clock()
    facts = parse_facts(transport.host, result.stdout)
    return replace(facts, clock=Clock(facts.clock.host, before, after))


async def gather_file_facts(
    transport: Transport, paths: Sequence[str], *, timeout: float | None = 60.0
) -> dict[str, FileFacts | None]:
    """The ``file`` sections only, for the drift check before acting."""
    if not paths:
        return {}
    result = await transport.run(file_facts_command(paths), step="check for drift", timeout=timeout)
    return dict(parse_facts(transport.host, result.stdout).files)


async def gather_all(
    transports: Mapping[str, Transport],
    wanted: Mapping[str, tuple[Sequence[str], Sequence[str]]],
    *,
    clock: Callable[[], float] = time.time,
) -> dict[str, HostFacts]:
    """Facts of every host in ``wanted`` (host -> (paths, services)), in parallel."""
    names = list(wanted)
    results = await asyncio.gather(
        *(gather_facts(transports[n], *wanted[n], clock=clock) for n in names)
    )
    return dict(zip(names, results, strict=True))


# Current contents of files, for readable diffs in the plan: never asked for
# secret files (the plan layer chooses the paths). "$1" is the byte limit.
# A symlink is not followed (it could point at anything), and without base64
# nothing is read: an empty section would read as an empty file.
READ_SCRIPT = r"""
limit=$1; shift
encode=no; if command -v base64 >/dev/null 2>&1; then encode=yes; fi
printf '@@kubeprem facts 1\n'
for p in "$@"; do
  if [ -L "$p" ]; then
    printf '@@kubeprem content-symlink %s\n' "$p"
  elif [ "$encode" = no ]; then
    printf '@@kubeprem content-unreadable %s\n' "$p"
  elif [ -f "$p" ] && [ -r "$p" ]; then
    size=$(wc -c < "$p")
    if [ "$size" -le "$limit" ]; then
      printf '@@kubeprem content %s\n' "$p"
      base64 < "$p"
    else
      printf '@@kubeprem content-too-large %s\n' "$p"
    fi
  else
    printf '@@kubeprem content-missing %s\n' "$p"
  fi
done
printf '@@kubeprem end\n'
"""


def read_command(paths: Sequence[str], limit: int) -> list[str]:
    _check_args(paths, ())
    return ["sh", "-c", READ_SCRIPT, "kubeprem-read", str(int(limit)), *paths]


def parse_contents(host: str, output: str) -> dict[str, str]:
    """Pure: path -> text for each file that is readable UTF-8 text."""
    sections = split_sections(output)
    if not sections or sections[0][0] != "facts" or sections[-1][0] != "end":
        raise OperationError(f"{host}: file preview output is not the read script's")
    texts: dict[str, str] = {}
    for name, arg, lines in sections:
        if name != "content" or not arg:
            continue
        try:
            texts[arg] = base64.b64decode("".join(lines), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue  # binary: the plan shows sizes, not a diff
    return texts


async def gather_contents(
    transport: Transport,
    paths: Sequence[str],
    *,
    limit: int = 256 * 1024,
    timeout: float | None = 30.0,
) -> dict[str, str]:
    """One round trip: current text of ``paths`` (non-secret files only, by
    contract). A host that does not answer within ``timeout`` raises an
    OperationError, and the plan keeps hashes for it."""
    if not paths:
        return {}
    result = await transport.run(
        read_command(paths, limit), step="read files for the plan", timeout=timeout
    )
    return parse_contents(transport.host, result.stdout)

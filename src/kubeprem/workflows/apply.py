"""Plan and apply: bare machines to a highly-available cluster, idempotently.

Called by `kubeprem plan` and `kubeprem apply`. One facts round trip per
host feeds a pure diff (the plan shown before acting); apply then executes
that plan phase by phase, each phase gated on the health of what it
started (the thesis's chapter 3, in order):

    preflight → base files and binaries → etcd (quorum) → control plane
    (/readyz on each) → HAProxy + keepalived (/readyz via the VIP) → cluster
    objects (RBAC) → container runtime → images → kubelet + kube-proxy (every
    worker registered, given its pod CIDR from the site, and Ready)

A rerun converges: each phase only does what its facts say is missing.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubeprem.addons import dns, smoke
from kubeprem.artifacts.cache import ArtifactSet
from kubeprem.components import paths, ports, rbac
from kubeprem.components.base import Rendered
from kubeprem.errors import OperationError, PreflightError
from kubeprem.images.builder import ImageArchive
from kubeprem.pki.bundle import PkiBundle
from kubeprem.plan.diff import diff, is_unit_path, wanted
from kubeprem.plan.facts import HostFacts, gather_contents, gather_facts
from kubeprem.plan.model import (
    PREVIEW_LIMIT,
    Change,
    DaemonReload,
    EnableService,
    HostPlan,
    Plan,
    ReloadService,
    RestartService,
    StartService,
    WriteFile,
    ordered,
)
from kubeprem.site.load import LoadedSite
from kubeprem.site.model import Machine, Site
from kubeprem.transport.base import Transport
from kubeprem.transport.ssh import TEMP_GLOB
from kubeprem.workflows import gates
from kubeprem.workflows.desired import desired_state
from kubeprem.workflows.execute import ApplySummary, Progress, execute
from kubeprem.workflows.nodes import joined

Say = Callable[[str], None]


@dataclass(frozen=True)
class Phase:
    name: str
    components: frozenset[str]


# The order of the thesis's chapter 3; gates are in `_gate` below.
PHASES: tuple[Phase, ...] = (
    Phase("base", frozenset({"pki", "artifacts", "node-os", "routes", "firewall"})),
    Phase("etcd", frozenset({"etcd"})),
    Phase(
        "control-plane",
        frozenset({"kube-apiserver", "kube-controller-manager", "kube-scheduler"}),
    ),
    Phase("load-balancer", frozenset({"haproxy", "keepalived"})),
    Phase("cluster-objects", frozenset()),
    Phase("container-runtime", frozenset({"containerd", "cni"})),
    Phase("images", frozenset()),
    Phase("node-agents", frozenset({"kubelet", "kube-proxy"})),
    Phase("cluster-dns", frozenset()),
    Phase("smoke", frozenset()),
)
KNOWN_COMPONENTS = frozenset().union(*(p.components for p in PHASES))

# Directories the programs expect, created before the first phase.
DIRECTORIES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "etcd": ((paths.ETCD_DATA, "0700"),),
    "control-plane": (("/var/log/kubernetes", "0700"),),
    "worker": (("/var/lib/kubelet", "0700"), ("/var/lib/kube-proxy", "0755")),
    "lb": (),
}


@dataclass
class ClusterPlan:
    """What apply would do: per-host changes, and whether cluster objects
    and images still need applying (known only once the API answers)."""

    hosts: Plan
    facts: Mapping[str, HostFacts]
    desired: Mapping[str, list[Rendered]]
    problems: Mapping[str, list[str]]  # preflight findings per host
    # machine -> the Kubernetes release it runs, where the site names another
    releases: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self, *, verbose: bool = False) -> dict[str, Any]:
        out = self.hosts.to_dict(verbose=verbose)
        found = {h: list(p) for h, p in self.problems.items() if p}
        if found:
            out["preflight"] = found
        if self.releases:
            out["running_releases"] = dict(self.releases)
        return out


@dataclass
class PhaseResult:
    name: str
    seconds: float
    changes: int
    detail: str = ""


@dataclass
class ApplyReport:
    phases: list[PhaseResult] = field(default_factory=list)
    summaries: list[ApplySummary] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return sum(p.changes for p in self.phases)


# -- plan ------------------------------------------------------------------------


async def make_plan(
    loaded: LoadedSite,
    bundle: PkiBundle,
    artifacts: ArtifactSet | None,
    transports: Mapping[str, Transport],
    *,
    previews: bool = False,
) -> ClusterPlan:
    """Gather facts (one round trip per host) and diff against the desired state.

    ``previews``: the plan is shown to people, so read the current content of
    the changed text files for a diff (``with_previews``)."""
    site = loaded.site
    first = desired_state(site, bundle, artifacts)
    requests = {name: wanted(rendered) for name, rendered in first.items()}
    facts = await gather_every_host(transports, requests)
    options = {name: f.render_options() for name, f in facts.items()}
    for name in joined(loaded) & options.keys():
        options[name] = replace(options[name], etcd_existing=True)
    desired = desired_state(site, bundle, artifacts, options)
    hosts = diff(desired, facts)
    if previews:
        hosts = await with_previews(hosts, transports)
    return ClusterPlan(hosts, facts, desired, preflight(site, facts), version_changes(site, facts))


# The binaries whose version says which release a machine runs.
RELEASE_BINARIES = ("kube-apiserver", "kubelet")


def _release_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def installed_release(facts: HostFacts) -> str | None:
    """The Kubernetes release a machine runs: the lowest of its release
    binaries' versions; None when none is installed (a new machine)."""
    found = [facts.versions[b] for b in RELEASE_BINARIES if b in facts.versions]
    return min(found, key=_release_key) if found else None


def version_changes(site: Site, facts: Mapping[str, HostFacts]) -> dict[str, str]:
    """Machine -> the release it runs, for each that runs another release
    than the site file names."""
    out = {}
    for m in site.machines:
        have = installed_release(facts[m.name]) if m.name in facts else None
        if have is not None and have != site.cluster.kubernetes_version:
            out[m.name] = have
    return out


async def with_previews(plan: Plan, transports: Mapping[str, Transport]) -> Plan:
    """The plan with the current content of its changed text files, for
    readable diffs: one more round trip, only to hosts with such files, only
    for files whose hash differs, never for secrets (``Plan.preview_paths``),
    each file at most ``PREVIEW_LIMIT`` bytes. A host whose files cannot be
    read keeps its hashes: a preview is never worth failing a plan for."""
    wanted = {h: plan.preview_paths(h) for h in plan.hosts}
    wanted = {h: p for h, p in wanted.items() if p and h in transports}
    if not wanted:
        return plan
    names = list(wanted)
    results = await asyncio.gather(
        *(gather_contents(transports[n], wanted[n], limit=PREVIEW_LIMIT) for n in names),
        return_exceptions=True,
    )
    texts: dict[str, dict[str, str]] = {}
    for name, result in zip(names, results, strict=True):
        if isinstance(result, OperationError):
            continue
        if isinstance(result, BaseException):
            raise result  # a bug, not a host's failure
        texts[name] = result
    return plan.with_previews(texts)


async def gather_every_host(
    transports: Mapping[str, Transport],
    requests: Mapping[str, tuple[Sequence[str], Sequence[str]]],
) -> dict[str, HostFacts]:
    """Facts of every host, in parallel. Every host must answer before anything
    is changed anywhere: one that cannot be reached (powered off, wrong
    address, wrong key) fails the plan, and the error names each such host."""
    names = list(requests)
    results = await asyncio.gather(
        *(gather_facts(transports[n], *requests[n]) for n in names), return_exceptions=True
    )
    facts: dict[str, HostFacts] = {}
    failed: list[str] = []
    for name, result in zip(names, results, strict=True):
        if isinstance(result, OperationError):
            failed.append(str(result).strip().splitlines()[0])
        elif isinstance(result, BaseException):
            raise result  # a bug, not a host's failure
        else:
            facts[name] = result
    if failed:
        which = "host" if len(failed) == 1 else f"{len(failed)} hosts"
        raise OperationError(
            f"cannot plan: no facts from {which}, nothing was changed on any machine: "
            + "; ".join(failed)
        )
    return facts


def preflight(site: Site, facts: Mapping[str, HostFacts]) -> dict[str, list[str]]:
    """Pure checks on the facts: what would make the bootstrap fail."""
    out: dict[str, list[str]] = {}
    for m in site.machines:
        f = facts[m.name]
        problems: list[str] = []
        if not f.systemd:
            problems.append(
                "systemd is not running as PID 1; kubeprem runs services as systemd units"
            )
        if f.arch not in (None, "x86_64"):
            problems.append(f"architecture {f.arch}: the artifacts are built for x86_64 (amd64)")
        if m.has("worker") and f.swap_in_use and not f.in_container:
            problems.append(
                "swap is on; the kubelet refuses to start with swap (swapoff -a, and remove it from /etc/fstab)"
            )
        offset = f.clock.offset
        if offset is not None and abs(offset) > 2 + (f.clock.uncertainty or 0):
            problems.append(
                f"clock is {offset:+.1f} s off the operator's; enable NTP (TLS and etcd need synchronised clocks)"
            )
        problems += port_conflicts(site, m, f)
        if m.has("worker"):
            problems += kernel_problems(f)
        out[m.name] = problems
    return out


def kernel_problems(facts: HostFacts) -> list[str]:
    """A kernel module a worker needs that is not loaded and cannot be.

    The base phase loads overlay and br_netfilter on a machine (modprobe via
    /etc/modules-load.d), so a module that is not loaded yet refuses only
    when that cannot work: in a container (only the host can load it), or
    when modinfo finds no module for the running kernel. What the facts do
    not say (an older host, no modinfo) refuses nothing.
    """
    k = facts.kernel
    # module, loaded, loadable, why a worker needs it (see components/node_os.py)
    needs = (
        ("overlay", k.overlay, k.overlay_module, "containerd's overlayfs snapshotter"),
        (
            "br_netfilter",
            k.br_netfilter_loaded,
            k.br_netfilter_module,
            "Services: bridged pod traffic must pass iptables",
        ),
    )
    out: list[str] = []
    for name, loaded, loadable, why in needs:
        if loaded is not False:
            continue
        if facts.in_container:
            out.append(
                f"kernel module {name} is not loaded, and a container cannot load it "
                f"(needed for {why}): on the host, `modprobe {name}` and add it to "
                "/etc/modules-load.d/, then apply again"
            )
        elif loadable is False:
            out.append(
                f"kernel module {name} is not loaded and the running kernel has none to "
                f"load (`modinfo {name}` finds nothing; needed for {why}): boot a kernel "
                "with it, then apply again"
            )
    return out


# is-active answers that say for certain a unit holds no port: anything else
# (active, activating, reloading, deactivating, unknown) may be our own
# service holding it, and a rerun on a converged cluster must pass.
STOPPED = frozenset({"inactive", "failed"})


def port_conflicts(site: Site, machine: Machine, facts: HostFacts) -> list[str]:
    """A port one of the machine's components needs, held by another program:
    a listener on it, and the kubeprem unit that owns it not running. Only
    what the facts show for certain: no listener list, no state of the unit
    or an address that cannot be read refuse nothing."""
    if facts.listeners is None:
        return []
    out: list[str] = []
    seen: set[tuple[int, str]] = set()
    for need in ports.listens(site, machine):
        if (need.port, need.service) in seen:
            continue
        state = facts.services.get(need.service)
        if state is None or state.active not in STOPPED:
            continue
        held = [
            lst
            for lst in facts.listeners
            if lst.port == need.port
            and ports.clashes(need.address, lst.address, dual_stack=need.dual_stack)
        ]
        if not held:
            continue
        seen.add((need.port, need.service))
        where = ", ".join(
            f"[{lst.address}]:{lst.port}" if ":" in lst.address else f"{lst.address}:{lst.port}"
            for lst in held
        )
        fix = f"Stop that program (`ss -ltnp 'sport = :{need.port}'` names it)"
        if need.setting:
            fix += f" or give {need.component} another port ({need.setting} in the site file)"
        out.append(
            f"TCP port {need.port} is in use ({where}) while {need.service} is "
            f"{state.active}: another program holds the port {need.component} needs "
            f"({need.what}). {fix}, then apply again"
        )
    return out


def check_preflight(cplan: ClusterPlan, *, upgrading: bool = False) -> None:
    """Refuse (exit status 2) when the preflight found a problem on any
    machine, or, unless ``upgrading``, when machines run another release than
    the site file names: apply would restart every machine's components at
    once, workers undrained; `kubeprem upgrade apply` rolls them instead."""
    bad = {h: p for h, p in cplan.problems.items() if p}
    if bad:
        lines = "; ".join(f"{h}: {', '.join(p)}" for h, p in bad.items())
        raise PreflightError(f"preflight failed, nothing changed: {lines}")
    if cplan.releases and not upgrading:
        runs = ", ".join(f"{h} runs {v}" for h, v in cplan.releases.items())
        raise PreflightError(
            f"{runs}, and the site file names another release: apply keeps a cluster at "
            "its release and changes nothing now; to move it, run `kubeprem upgrade apply "
            "SITE` (one machine at a time, workers drained), which also resumes an "
            "interrupted upgrade"
        )


def phase_plan(plan: Plan, desired: Mapping[str, list[Rendered]], phase: Phase) -> Plan:
    """The part of the full plan that belongs to one phase's components."""
    hosts: dict[str, HostPlan] = {}
    for host, hp in plan.hosts.items():
        services = {s for r in desired[host] if r.component in phase.components for s in r.services}
        changes: list[Change] = []
        units: list[str] = []
        for c in hp.changes:
            if isinstance(c, WriteFile) and c.component in phase.components:
                changes.append(c)
                if c.content_changes and is_unit_path(c.path):
                    units.append(c.path)
            elif (
                isinstance(c, EnableService | StartService | RestartService | ReloadService)
                and c.service in services
            ):
                changes.append(c)
        if units:
            changes.append(DaemonReload(tuple(units)))
        hosts[host] = HostPlan(host, ordered(changes), ())
    return Plan(hosts)


# Phases whose services carry the cluster's availability: restarting them on
# every machine at once would take etcd's quorum, the API or the VIP away.
ROLLED = frozenset({"etcd", "control-plane", "load-balancer"})


def batches(part: Plan, *, rolled: bool) -> list[tuple[Plan, str | None]]:
    """How a phase's plan is executed: all hosts at once, unless the phase
    is ``rolled`` and more than one host restarts a service. Then the hosts
    that restart nothing (new files, first starts, reloads) go first
    together, and each host that restarts follows alone, in machine order,
    so the caller can check it before the next. Each batch comes with the
    name of the host it rolls, or None."""
    restarting = [
        h for h, hp in part.hosts.items() if any(isinstance(c, RestartService) for c in hp.changes)
    ]
    if not rolled or len(restarting) < 2:
        return [(part, None)]
    rest = {h: hp for h, hp in part.hosts.items() if h not in restarting and hp.changes}
    out: list[tuple[Plan, str | None]] = [(Plan(rest), None)] if rest else []
    return out + [(Plan({h: part.hosts[h]}), h) for h in restarting]


async def host_gate(
    phase: Phase, site: Site, host: str, transports: Mapping[str, Transport]
) -> None:
    """After one machine of a rolled phase restarted: it is healthy again
    before the next one goes down."""
    if phase.name == "etcd":
        await gates.etcd_healthy(transports[host])
    elif phase.name == "control-plane":
        await gates.apiserver_ready(transports[host], site)
    elif phase.name == "load-balancer":
        others = [m.name for m in site.controllers if m.name != host]
        await gates.vip_ready(transports[others[0] if others else host])


# -- apply -----------------------------------------------------------------------


async def apply(
    loaded: LoadedSite,
    cplan: ClusterPlan,
    transports: Mapping[str, Transport],
    images: Sequence[ImageArchive],
    *,
    say: Say,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ApplyReport:
    site = loaded.site
    check_preflight(cplan)
    unknown = {r.component for rs in cplan.desired.values() for r in rs} - KNOWN_COMPONENTS
    if unknown:
        raise AssertionError(f"components without a phase: {sorted(unknown)}")
    report = ApplyReport()
    first_cp = site.controllers[0].name
    removed = await prepare_hosts(site, cplan.desired, transports)
    for host, temps in removed.items():
        if temps:
            say(f"{host}: removed {len(temps)} temporary files of an interrupted apply")
    for phase in PHASES:
        t0 = clock()
        say(f"phase {phase.name}")
        changes = 0
        detail = ""
        if phase.components:
            part = phase_plan(cplan.hosts, cplan.desired, phase)
            if not part.empty:
                steps = batches(part, rolled=phase.name in ROLLED)
                for batch, rolling in steps:
                    if rolling is not None:
                        say(f"  {rolling}: restarts alone, checked before the next machine")
                    summary = await execute(batch, transports, progress=progress)
                    report.summaries.append(summary)
                    if len(steps) > 1:
                        # healthy before the next batch takes a machine down
                        for host, hp in batch.hosts.items():
                            if hp.changes:
                                await host_gate(phase, site, host, transports)
                changes = part.total()
        elif phase.name == "cluster-objects":
            changes, detail = await cluster_objects(site, transports[first_cp])
        elif phase.name == "images":
            changes, detail = await import_images(site, transports, images, say)
        elif phase.name == "cluster-dns":
            changes, detail = await dns.deploy(site, transports[first_cp])
        elif phase.name == "smoke":
            changes, detail = await smoke.deploy(site, transports[first_cp])
        changes += await _gate(phase, site, transports)
        report.phases.append(PhaseResult(phase.name, clock() - t0, changes, detail))
    return report


# One round trip per host before the first phase: create the directories the
# programs expect, and remove the temporary files of an interrupted write
# (transport.put writes `.<name>.kubeprem-<hex>` beside its target and renames
# it; a killed apply can leave one). Only names of that pattern, only in the
# directories apply writes to. Arguments: GLOB MODE DIR ... -- DIR ...
PREPARE_SCRIPT = r"""
temp=$1; shift
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  install -d -m "$1" -- "$2" || exit 1
  shift 2
done
[ $# -gt 0 ] && shift
for d in "$@"; do
  [ -d "$d" ] || continue
  find "$d" -maxdepth 1 -type f -name "$temp" -print -delete
done
exit 0
"""

IMAGES_DIR = "/var/lib/kubeprem/images"


def prepare_command(
    directories: Mapping[str, str], managed: Sequence[str], temp_glob: str = TEMP_GLOB
) -> list[str]:
    """The preparation command: ``directories`` (path -> mode) to create, and
    the ``managed`` directories to clear of stale temporaries."""
    pairs = [x for d, mode in directories.items() for x in (mode, d)]
    return ["sh", "-c", PREPARE_SCRIPT, "kubeprem-prepare", temp_glob, *pairs, "--", *managed]


def managed_directories(rendered: Sequence[Rendered]) -> list[str]:
    dirs = {posixpath.dirname(f.path) for r in rendered for f in r.files}
    return sorted(dirs | {IMAGES_DIR})


async def prepare_hosts(
    site: Site, desired: Mapping[str, list[Rendered]], transports: Mapping[str, Transport]
) -> dict[str, list[str]]:
    """Host -> the stale temporary files removed from it."""

    async def one(name: str) -> list[str]:
        m = site.machine(name)
        dirs = {d: mode for role in m.roles for d, mode in DIRECTORIES[role]}
        argv = prepare_command(dirs, managed_directories(desired[name]))
        r = await transports[name].run(argv, step="create directories, remove stale temporaries")
        return [line for line in r.stdout.splitlines() if line.strip()]

    names = [m.name for m in site.machines]
    removed = await asyncio.gather(*(one(n) for n in names))
    return dict(zip(names, removed, strict=True))


async def _gate(phase: Phase, site: Site, transports: Mapping[str, Transport]) -> int:
    """Wait for what the phase started. Gates run even when nothing changed:
    a converged cluster must also be a healthy one before the next phase.
    Returns the changes the gate itself made (pod CIDRs given to new nodes)."""
    if phase.name == "etcd":
        await gates.etcd_healthy(transports[site.etcd_members[0].name])
    elif phase.name == "control-plane":
        await gates.all_of(
            *(gates.apiserver_ready(transports[m.name], site) for m in site.controllers)
        )
    elif phase.name == "load-balancer":
        await gates.vip_ready(transports[site.controllers[0].name])
    elif phase.name == "node-agents":
        t = transports[site.controllers[0].name]
        names = [m.name for m in site.workers]
        await gates.nodes_registered(t, names)
        patched = await set_pod_cidrs(site, t)
        await gates.nodes_ready(t, names)
        return patched
    return 0


# -- cluster objects ---------------------------------------------------------------


def cluster_manifests(site: Site) -> str:
    return rbac.manifests_text(site)


async def cluster_objects(site: Site, t: Transport) -> tuple[int, str]:
    """Server-side apply of the cluster's own objects, only when they differ."""
    text = cluster_manifests(site).encode()
    common = ["--server-side", "--field-manager=kubeprem", "-f", "-"]
    d = await t.run(
        gates.kubectl("diff", *common), step="diff cluster objects", stdin=text, check=False
    )
    if d.status == 0:
        return 0, "cluster objects up to date"
    if d.status != 1:
        raise OperationError(
            f"{t.host}: kubectl diff of cluster objects failed: {d.stderr.strip()[-300:]}"
        )
    await t.run(
        gates.kubectl("apply", "--force-conflicts", *common),
        step="apply cluster objects",
        stdin=text,
    )
    changed = sum(1 for line in d.stdout.splitlines() if line.startswith("diff "))
    return max(changed, 1), "cluster objects applied"


def pod_cidr_patches(site: Site, nodes: Mapping[str, str]) -> dict[str, str]:
    """Node -> the JSON merge patch that gives it the site's pod CIDR, for nodes
    that have none yet. A node with a different one is an error: the field is
    immutable once set, and its bridge and the routes use the site's value."""
    out = {}
    for name, cidr in site.pod_cidrs.items():
        current = nodes.get(name, "")
        if current == str(cidr):
            continue
        if current:
            raise OperationError(
                f"node {name} has pod CIDR {current} but the site gives it {cidr}; pod "
                f"CIDRs cannot change on a live node: pin pod_cidr: {current} for {name} "
                "in the site file, or remove the node (kubeprem node remove) and add it again"
            )
        out[name] = json.dumps({"spec": {"podCIDR": str(cidr), "podCIDRs": [str(cidr)]}})
    return out


async def set_pod_cidrs(site: Site, t: Transport) -> int:
    r = await t.run(gates.kubectl("get", "nodes", "-o", "json"), step="read nodes")
    nodes = {
        item["metadata"]["name"]: item.get("spec", {}).get("podCIDR", "")
        for item in json.loads(r.stdout).get("items", [])
    }
    patches = pod_cidr_patches(site, nodes)
    for name, patch in patches.items():
        await t.run(
            gates.kubectl("patch", "node", name, "--type=merge", "-p", patch),
            step=f"set pod CIDR of {name}",
        )
    return len(patches)


# -- images ----------------------------------------------------------------------


def base_images(site: Site) -> tuple[str, ...]:
    """The catalogue images the images phase imports on every worker: the
    sandbox (pause), the smoke test's busybox and the cluster DNS server's
    (``coredns`` on releases built from Go modules, ``cluster-dns`` on the
    legacy one; none when the site names its own CoreDNS archive). Apps
    import their own images when deployed."""
    return ("pause", "busybox", *dns.catalogue_images(site))


def parse_ctr_images(output: str) -> dict[str, str]:
    """Reference -> manifest digest, from `ctr images ls` (header line first)."""
    out = {}
    for line in output.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3:
            out[cols[0]] = cols[2]
    return out


async def import_images(
    site: Site, transports: Mapping[str, Transport], images: Sequence[ImageArchive], say: Say
) -> tuple[int, str]:
    """Import every archive a worker lacks into its containerd (k8s.io namespace)."""
    from kubeprem.components.base import File

    ctr = f"{paths.BIN_DIR}/ctr"
    imported = 0

    async def one(name: str) -> int:
        t = transports[name]
        listing = await t.run([ctr, "-n", "k8s.io", "images", "ls"], step="list images")
        present = parse_ctr_images(listing.stdout)
        count = 0
        for image in images:
            if present.get(image.ref) == image.digest:
                continue
            remote = f"/var/lib/kubeprem/images/{image.name}.tar"
            await t.put(
                File(remote, Path(image.path).read_bytes(), 0o600), step=f"copy image {image.ref}"
            )
            await t.run(
                [ctr, "-n", "k8s.io", "images", "import", remote], step=f"import image {image.ref}"
            )
            await t.run(["rm", "-f", remote], step="remove image archive")
            count += 1
        return count

    counts = await asyncio.gather(*(one(m.name) for m in site.workers))
    imported = sum(counts)
    return imported, f"{imported} image imports" if imported else "images present"


def summary_json(report: ApplyReport) -> str:
    return json.dumps(
        {"phases": [p.__dict__ for p in report.phases], "changes": report.changes}, indent=2
    )

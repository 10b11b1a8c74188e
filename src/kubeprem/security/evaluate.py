"""Pure evaluation of the security checks over one host's facts.

``evaluate(facts, site, machine)`` returns one ``CheckResult`` per check that
applies to the machine's roles, in the order of ``CHECKS``. Running
processes are judged by their command lines (flags given twice: the last
wins, as in the Go flag parser); the kubelet by its configuration file, with
command-line flags taking precedence as they do in the kubelet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from io import StringIO
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from kubeprem.components import audit, firewall, paths
from kubeprem.security.checks import CHECKS, Check, CheckResult, Status
from kubeprem.security.facts import SecurityFacts, expected_files
from kubeprem.site.model import Machine, Site

# Boolean flags take no separate value: "--profiling false" is not false.
BOOL_FLAGS = frozenset(
    {
        "anonymous-auth",
        "profiling",
        "client-cert-auth",
        "peer-client-cert-auth",
        "auto-tls",
        "peer-auto-tls",
        "protect-kernel-defaults",
    }
)

Outcome = tuple[Status, str]


def parse_flags(argv: Sequence[str]) -> dict[str, str]:
    """``--key=value``, ``--key value`` and bare boolean ``--key`` (true)."""
    out: dict[str, str] = {}
    args = list(argv[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            continue
        key, eq, value = arg.lstrip("-").partition("=")
        if eq:
            out[key] = value
        elif key in BOOL_FLAGS:
            out[key] = "true"
        elif i < len(args) and not args[i].startswith("-"):
            out[key] = args[i]
            i += 1
        else:
            out[key] = "true"
    return out


def _is_true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "t")


def _list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class _Host:
    """Facts and site for one machine, with the lookups the checks share."""

    def __init__(self, facts: SecurityFacts, site: Site, machine: Machine) -> None:
        self.facts = facts
        self.site = site
        self.machine = machine

    def flags(self, process: str) -> list[dict[str, str]] | str:
        """Each running instance's flags, or why there are none."""
        found = self.facts.process(process)
        if not found:
            return f"{process} is not running"
        return [parse_flags(argv) for argv in found]


def _per_process(
    host: _Host, process: str, judge: Callable[[dict[str, str]], list[str]]
) -> Outcome:
    instances = host.flags(process)
    if isinstance(instances, str):
        return "unknown", instances
    problems: list[str] = []
    for flags in instances:
        problems += [p for p in judge(flags) if p not in problems]
    return ("fail", "; ".join(problems)) if problems else ("pass", "")


# -- files -----------------------------------------------------------------


def _files(
    host: _Host, kind: str, mode_ok: Callable[[int], bool], wanted: str, *, owner: bool = True
) -> Outcome:
    paths_ = expected_files(host.site, host.machine)[kind]
    bad: list[str] = []
    unknown: list[str] = []
    for path in paths_:
        if path not in host.facts.files:
            unknown.append(f"{path} not examined")
            continue
        st = host.facts.files[path]
        if st is None:
            unknown.append(f"{path} is missing")
            continue
        if st.mode is None or not mode_ok(st.mode):
            shown = "?" if st.mode is None else f"{st.mode:04o}"
            bad.append(f"{path} is {shown}, want {wanted}")
        if owner and (st.owner, st.group) != ("root", "root"):
            bad.append(f"{path} is owned by {st.owner}:{st.group}, want root:root")
    if bad:
        return "fail", "; ".join(bad + unknown)
    if unknown:
        return "unknown", "; ".join(unknown)
    return "pass", f"{len(paths_)} files"


def _only_owner(mode: int) -> bool:
    return mode & 0o177 == 0  # no execute for the owner, nothing for group and others


def _root_writable(mode: int) -> bool:
    return mode & 0o022 == 0 and mode & 0o7000 == 0


def files_keys(h: _Host) -> Outcome:
    return _files(h, "keys", _only_owner, "0600")


def files_kubeconfigs(h: _Host) -> Outcome:
    return _files(h, "kubeconfigs", _only_owner, "0600")


def files_certificates(h: _Host) -> Outcome:
    return _files(h, "certificates", lambda m: _root_writable(m) and m & 0o111 == 0, "0644")


def files_config(h: _Host) -> Outcome:
    return _files(h, "config", _root_writable, "0644 or stricter")


def files_etcd_data(h: _Host) -> Outcome:
    st = h.facts.files.get(paths.ETCD_DATA)
    if st is None:
        return "unknown", f"{paths.ETCD_DATA} is missing or was not examined"
    if not st.directory:
        return "fail", f"{paths.ETCD_DATA} is a {st.kind}, not a directory"
    if st.mode is None or st.mode & 0o077:
        shown = "?" if st.mode is None else f"{st.mode:04o}"
        return "fail", f"{paths.ETCD_DATA} is {shown}, want 0700"
    return "pass", ""


# -- kube-apiserver ----------------------------------------------------------


def _apiserver(h: _Host, judge: Callable[[dict[str, str]], list[str]]) -> Outcome:
    return _per_process(h, "kube-apiserver", judge)


def apiserver_anonymous(h: _Host) -> Outcome:
    def judge(f: dict[str, str]) -> list[str]:
        value = f.get("anonymous-auth")
        return [] if value == "false" else [f"--anonymous-auth is {value or 'unset (true)'}"]

    return _apiserver(h, judge)


def apiserver_authorization(h: _Host) -> Outcome:
    def judge(f: dict[str, str]) -> list[str]:
        modes = _list(f.get("authorization-mode"))
        out = [f"--authorization-mode lacks {m}" for m in ("Node", "RBAC") if m not in modes]
        if "AlwaysAllow" in modes:
            out.append("--authorization-mode includes AlwaysAllow")
        return out

    return _apiserver(h, judge)


def apiserver_admission(h: _Host) -> Outcome:
    def judge(f: dict[str, str]) -> list[str]:
        enabled = _list(f.get("enable-admission-plugins"))
        disabled = _list(f.get("disable-admission-plugins"))
        out = []
        if "NodeRestriction" not in enabled or "NodeRestriction" in disabled:
            out.append("NodeRestriction is not admitted")
        if "AlwaysAdmit" in enabled:
            out.append("AlwaysAdmit is enabled")
        return out

    return _apiserver(h, judge)


def apiserver_audit(h: _Host) -> Outcome:
    a = h.site.audit
    if not a.enabled:
        return "fail", "auditing is off in the site file (audit.enabled: false)"
    # what the renderer gives the API server, from the site's audit section
    want = {k: str(v) for k, v in audit.apiserver_flags(h.site).items()}

    def judge(f: dict[str, str]) -> list[str]:
        out = []
        for key, value in want.items():
            got = f.get(key)
            if not got:
                out.append(f"--{key} is not set")
            elif key.startswith("audit-log-max") and got != value:
                out.append(f"--{key} is {got}, the site says {value}")
        return out

    return _apiserver(h, judge)


def apiserver_encryption(h: _Host) -> Outcome:
    if not h.site.encryption.at_rest:
        return "fail", "encryption at rest is off in the site file (encryption.at_rest: false)"

    def judge(f: dict[str, str]) -> list[str]:
        return [] if f.get("encryption-provider-config") else ["--encryption-provider-config unset"]

    return _apiserver(h, judge)


def apiserver_profiling(h: _Host) -> Outcome:
    def judge(f: dict[str, str]) -> list[str]:
        value = f.get("profiling")
        return [] if value == "false" else [f"--profiling is {value or 'unset (true)'}"]

    return _apiserver(h, judge)


APISERVER_TLS_FLAGS = (
    "tls-cert-file",
    "tls-private-key-file",
    "client-ca-file",
    "kubelet-client-certificate",
    "kubelet-client-key",
    "kubelet-certificate-authority",
    "etcd-certfile",
    "etcd-keyfile",
    "etcd-cafile",
)


def apiserver_tls(h: _Host) -> Outcome:
    def judge(f: dict[str, str]) -> list[str]:
        missing = [k for k in APISERVER_TLS_FLAGS if not f.get(k)]
        out = [f"--{k} is not set" for k in missing]
        if any(not s.startswith("https://") for s in _list(f.get("etcd-servers"))):
            out.append("--etcd-servers has a plain-HTTP URL")
        return out

    return _apiserver(h, judge)


# -- kubelet -----------------------------------------------------------------


def _kubelet_config(h: _Host) -> tuple[dict[str, str], dict[str, Any]] | str:
    """(flags, configuration) of the running kubelet, or why they are unknown."""
    instances = h.flags("kubelet")
    if isinstance(instances, str):
        return instances
    flags = instances[0]
    path = flags.get("config")
    if path is None:
        return flags, {}
    if path not in h.facts.contents:
        return f"the kubelet runs with --config={path}, which was not read"
    text = h.facts.contents[path]
    if text is None:
        return f"the kubelet's configuration {path} is missing or unreadable"
    try:
        data = YAML(typ="safe").load(StringIO(text))
    except YAMLError as exc:
        return f"{path} is not YAML: {str(exc).splitlines()[0]}"
    return flags, data if isinstance(data, dict) else {}


def _get(data: dict[str, Any], *keys: str) -> Any:
    node: Any = data
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _kubelet(h: _Host, judge: Callable[[dict[str, str], dict[str, Any]], Outcome]) -> Outcome:
    got = _kubelet_config(h)
    if isinstance(got, str):
        return "unknown", got
    return judge(*got)


def kubelet_anonymous(h: _Host) -> Outcome:
    def judge(flags: dict[str, str], cfg: dict[str, Any]) -> Outcome:
        if "anonymous-auth" in flags:
            value: Any = _is_true(flags["anonymous-auth"])
            where = "--anonymous-auth"
        else:
            value = _get(cfg, "authentication", "anonymous", "enabled")
            where = "authentication.anonymous.enabled"
        if value is False:
            return "pass", ""
        return "fail", f"{where} is {'unset' if value is None else str(value).lower()}"

    return _kubelet(h, judge)


def kubelet_authorization(h: _Host) -> Outcome:
    def judge(flags: dict[str, str], cfg: dict[str, Any]) -> Outcome:
        problems = []
        mode = flags.get("authorization-mode") or _get(cfg, "authorization", "mode")
        if mode != "Webhook":
            problems.append(f"authorization mode is {mode or 'unset'}, want Webhook")
        webhook = flags.get("authentication-token-webhook")
        hook_on = (
            _is_true(webhook)
            if webhook is not None
            else (_get(cfg, "authentication", "webhook", "enabled") is True)
        )
        if not hook_on:
            problems.append("webhook (token) authentication is off")
        ca = flags.get("client-ca-file") or _get(cfg, "authentication", "x509", "clientCAFile")
        if not ca:
            problems.append("no client CA file")
        return ("fail", "; ".join(problems)) if problems else ("pass", "")

    return _kubelet(h, judge)


def kubelet_read_only_port(h: _Host) -> Outcome:
    def judge(flags: dict[str, str], cfg: dict[str, Any]) -> Outcome:
        value: Any = flags.get("read-only-port", _get(cfg, "readOnlyPort"))
        if str(value) == "0":
            return "pass", ""
        return "fail", f"readOnlyPort is {'unset' if value is None else value}"

    return _kubelet(h, judge)


def kubelet_protect_kernel_defaults(h: _Host) -> Outcome:
    def judge(flags: dict[str, str], cfg: dict[str, Any]) -> Outcome:
        if "protect-kernel-defaults" in flags:
            on = _is_true(flags["protect-kernel-defaults"])
        else:
            on = _get(cfg, "protectKernelDefaults") is True
        if on:
            return "pass", ""
        if h.facts.container:
            return (
                "exception",
                f"off in a container ({h.facts.container}): the kernel settings are the host's",
            )
        return "fail", "protectKernelDefaults is off on a machine that is not a container"

    return _kubelet(h, judge)


# -- etcd ------------------------------------------------------------------


def _etcd_tls(h: _Host, prefix: str) -> Outcome:
    auth = f"{prefix}client-cert-auth"
    files = (
        ("peer-cert-file", "peer-key-file", "peer-trusted-ca-file")
        if prefix
        else ("cert-file", "key-file", "trusted-ca-file")
    )
    auto = f"{prefix}auto-tls"

    def judge(f: dict[str, str]) -> list[str]:
        out = [] if f.get(auth) == "true" else [f"--{auth} is {f.get(auth, 'unset (false)')}"]
        out += [f"--{k} is not set" for k in files if not f.get(k)]
        if _is_true(f.get(auto)):
            out.append(f"--{auto} is true")
        return out

    return _per_process(h, "etcd", judge)


def etcd_client_tls(h: _Host) -> Outcome:
    return _etcd_tls(h, "")


def etcd_peer_tls(h: _Host) -> Outcome:
    return _etcd_tls(h, "peer-")


# -- firewall --------------------------------------------------------------


def expected_sets(site: Site, machine: Machine) -> list[str]:
    """Names of the named sets the rendered ruleset declares for this machine."""
    text = firewall.ruleset(site, machine)
    return [line.split()[1] for line in text.splitlines() if line.startswith("\tset ")]


def _counter_packets(text: str, name: str) -> str | None:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == f"counter {name} {{" and i + 1 < len(lines):
            words = lines[i + 1].split()
            if len(words) >= 2 and words[0] == "packets":
                return words[1]
    return None


def firewall_loaded(h: _Host) -> Outcome:
    if not h.site.firewall.enabled:
        return "fail", "the firewall is off in the site file (firewall.enabled: false)"
    nft = h.facts.nft
    if nft.status is None:
        return "unknown", "nft is not installed, so the rules cannot be read"
    if not nft.loaded:
        end = nft.text.strip().splitlines()[-1:] or ["no output"]
        return "fail", f"table inet {firewall.TABLE} is not loaded ({end[0]})"
    text = nft.text
    problems = []
    if not any("hook input" in line and "policy drop;" in line for line in text.splitlines()):
        problems.append("no input chain with policy drop")
    missing = [s for s in expected_sets(h.site, h.machine) if f"set {s} {{" not in text]
    if missing:
        problems.append("sets missing (stale rules?): " + ", ".join(missing))
    if problems:
        return "fail", "; ".join(problems)
    dropped = _counter_packets(text, firewall.INPUT_COUNTER)
    return "pass", "" if dropped is None else f"{dropped} packets dropped so far"


def firewall_persistent(h: _Host) -> Outcome:
    if not h.site.firewall.enabled:
        return "fail", "the firewall is off in the site file (firewall.enabled: false)"
    state = h.facts.services.get(firewall.SERVICE)
    if state is None:
        return "unknown", f"{firewall.SERVICE} was not examined"
    enabled, active = state
    if enabled == "enabled" and active == "active":
        return "pass", ""
    return "fail", f"{firewall.SERVICE} is {enabled} and {active}; want enabled and active"


EVALUATORS: dict[str, Callable[[_Host], Outcome]] = {
    "files.keys": files_keys,
    "files.kubeconfigs": files_kubeconfigs,
    "files.certificates": files_certificates,
    "files.config": files_config,
    "files.etcd-data": files_etcd_data,
    "apiserver.anonymous-auth": apiserver_anonymous,
    "apiserver.authorization": apiserver_authorization,
    "apiserver.admission": apiserver_admission,
    "apiserver.audit": apiserver_audit,
    "apiserver.encryption": apiserver_encryption,
    "apiserver.profiling": apiserver_profiling,
    "apiserver.tls": apiserver_tls,
    "kubelet.anonymous-auth": kubelet_anonymous,
    "kubelet.authorization": kubelet_authorization,
    "kubelet.read-only-port": kubelet_read_only_port,
    "kubelet.protect-kernel-defaults": kubelet_protect_kernel_defaults,
    "etcd.client-tls": etcd_client_tls,
    "etcd.peer-tls": etcd_peer_tls,
    "firewall.loaded": firewall_loaded,
    "firewall.persistent": firewall_persistent,
}


def evaluate(
    facts: SecurityFacts, site: Site, machine: Machine, checks: Iterable[Check] = CHECKS
) -> list[CheckResult]:
    """Every applicable check's result for ``machine``, in the order of ``checks``."""
    host = _Host(facts, site, machine)
    out = []
    for check in checks:
        if check.applies_to(machine.roles):
            status, detail = EVALUATORS[check.id](host)
            out.append(CheckResult(check, machine.name, status, detail))
    return out


__all__ = ["EVALUATORS", "evaluate", "expected_sets", "parse_flags"]

"""Security checks: the data, the fact script's parser and the pure evaluator.

A "healthy" host is built from what kubeprem renders (the API server's,
etcd's and the kubelet's own argv and configuration, the PKI files' modes,
the nft listing captured from the rendered ruleset in
tests/golden/firewall/nft-list/), so every check must pass on it; each test
then breaks one thing and expects exactly that item to fail, by name.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeprem.components import apiserver, etcd, firewall, kubelet, paths
from kubeprem.components.base import HostContext, RenderOptions
from kubeprem.components.pki_files import pki_files
from kubeprem.errors import OperationError
from kubeprem.pki import SeededKeySource, issue_pki
from kubeprem.security import CHECKS, CheckResult, evaluate, facts
from kubeprem.security.checks import BY_ID
from kubeprem.security.evaluate import EVALUATORS, parse_flags
from kubeprem.security.facts import FileStat, Nft, SecurityFacts
from kubeprem.site import Site, example_text, parse_site
from kubeprem.transport.fake import FakeTransport

NOW = datetime(2025, 3, 1, tzinfo=UTC)
LISTINGS = Path(__file__).parent.parent / "golden" / "firewall" / "nft-list"


def healthy(site: Site, name: str, *, container: str | None = None) -> SecurityFacts:
    m = site.machine(name)
    ctx = HostContext(site, m, RenderOptions(in_container=container is not None))
    files: dict[str, FileStat | None] = {}
    for kind, group in facts.expected_files(site, m).items():
        mode = 0o600 if kind in ("keys", "kubeconfigs") else 0o644
        for p in group:
            files[p] = FileStat(mode, "root", "root", "regular file")
    procs: dict[str, tuple[tuple[str, ...], ...]] = {}
    contents: dict[str, str | None] = {}
    if m.has("etcd"):
        files[paths.ETCD_DATA] = FileStat(0o700, "root", "root", "directory")
        procs["etcd"] = (tuple(etcd.argv(ctx)),)
    if m.has("control-plane"):
        procs["kube-apiserver"] = (tuple(apiserver.argv(ctx)),)
    if m.has("worker"):
        procs["kubelet"] = (tuple(kubelet.argv(ctx)),)
        contents[paths.KUBELET_CONFIG] = kubelet.config_yaml(ctx)
    listing = (LISTINGS / f"{'worker-0' if m.has('worker') else 'controller-0'}.txt").read_text()
    return SecurityFacts(
        host=name,
        container=container,
        files=files,
        processes=procs,
        contents=contents,
        nft=Nft(0, listing),
        services={firewall.SERVICE: ("enabled", "active")},
    )


def by_id(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.check.id: r for r in results}


def failed(results: list[CheckResult]) -> dict[str, str]:
    return {r.check.id: r.detail for r in results if r.failed}


# -- the data ------------------------------------------------------------------


def test_checks_are_data_with_an_evaluator_each() -> None:
    ids = [c.id for c in CHECKS]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(EVALUATORS)
    for c in CHECKS:
        assert c.severity in ("high", "medium", "low") and c.roles and c.title
        assert c.to_dict()["id"] == c.id
    assert BY_ID["apiserver.anonymous-auth"].cis == "1.2.1"
    assert BY_ID["etcd.client-tls"].cis == "2.1-2.3"


def test_result_to_dict() -> None:
    r = CheckResult(BY_ID["files.keys"], "worker-0", "fail", "x is 0644")
    assert r.failed
    assert r.to_dict() == {
        "machine": "worker-0",
        "id": "files.keys",
        "title": BY_ID["files.keys"].title,
        "severity": "high",
        "cis": "1.1.19, 1.1.21",
        "status": "fail",
        "detail": "x is 0644",
    }
    assert not replace(r, status="exception").failed
    assert replace(r, status="unknown").failed


def test_expected_files_match_what_pki_renders(example_site: Site) -> None:
    bundle = issue_pki(example_site, NOW, SeededKeySource())
    for m in example_site.machines:
        rendered = pki_files(HostContext(example_site, m), bundle).files
        want = facts.expected_files(example_site, m)
        secret = {f.path for f in rendered if f.secret}
        public = {f.path for f in rendered if not f.secret}
        assert set(want["keys"]) | set(want["kubeconfigs"]) == secret, m.name
        assert set(want["certificates"]) == public, m.name


# -- a healthy host passes everything ------------------------------------------


@pytest.mark.parametrize("name", ["controller-0", "worker-0"])
def test_healthy_server_passes(example_site: Site, name: str) -> None:
    results = evaluate(healthy(example_site, name), example_site, example_site.machine(name))
    assert {r.status for r in results} == {"pass"}, failed(results)
    ids = [r.check.id for r in results]
    if name == "worker-0":
        assert "kubelet.read-only-port" in ids and "etcd.client-tls" not in ids
    else:
        assert "etcd.peer-tls" in ids and "kubelet.anonymous-auth" not in ids
    assert "packets dropped so far" in by_id(results)["firewall.loaded"].detail


def test_protect_kernel_defaults_is_an_exception_in_a_container(example_site: Site) -> None:
    f = healthy(example_site, "worker-0", container="systemd-nspawn")
    results = by_id(evaluate(f, example_site, example_site.machine("worker-0")))
    r = results["kubelet.protect-kernel-defaults"]
    assert r.status == "exception" and not r.failed
    assert "systemd-nspawn" in r.detail
    # the same configuration on a real server is a failure
    real = replace(f, container=None)
    r = by_id(evaluate(real, example_site, example_site.machine("worker-0")))[
        "kubelet.protect-kernel-defaults"
    ]
    assert r.status == "fail"


# -- one thing broken, one item fails --------------------------------------------


def with_file(f: SecurityFacts, path: str, st: FileStat | None) -> SecurityFacts:
    return replace(f, files={**f.files, path: st})


def test_loosened_key_fails_naming_the_file(example_site: Site) -> None:
    f = healthy(example_site, "controller-0")
    f = with_file(f, paths.APISERVER_KEY, FileStat(0o644, "root", "root", "regular file"))
    got = failed(evaluate(f, example_site, example_site.machine("controller-0")))
    assert got == {"files.keys": f"{paths.APISERVER_KEY} is 0644, want 0600"}


def test_kubeconfig_owned_by_someone_else(example_site: Site) -> None:
    f = healthy(example_site, "worker-0")
    f = with_file(f, paths.KUBELET_CONF, FileStat(0o600, "alice", "root", "regular file"))
    got = failed(evaluate(f, example_site, example_site.machine("worker-0")))
    assert got == {
        "files.kubeconfigs": f"{paths.KUBELET_CONF} is owned by alice:root, want root:root"
    }


def test_group_writable_certificate_and_missing_one(example_site: Site) -> None:
    f = healthy(example_site, "worker-0")
    f = with_file(f, paths.CA_CRT, FileStat(0o664, "root", "root", "regular file"))
    f = with_file(f, paths.KUBELET_SERVING_CRT, None)
    got = failed(evaluate(f, example_site, example_site.machine("worker-0")))
    assert got["files.certificates"] == (
        f"{paths.CA_CRT} is 0664, want 0644; {paths.KUBELET_SERVING_CRT} is missing"
    )


def test_etcd_data_directory_mode(example_site: Site) -> None:
    f = healthy(example_site, "controller-0")
    f = with_file(f, paths.ETCD_DATA, FileStat(0o755, "root", "root", "directory"))
    got = failed(evaluate(f, example_site, example_site.machine("controller-0")))
    assert got == {"files.etcd-data": f"{paths.ETCD_DATA} is 0755, want 0700"}


def with_args(f: SecurityFacts, process: str, *extra: str) -> SecurityFacts:
    (argv,) = f.processes[process]
    return replace(f, processes={**f.processes, process: (argv + extra,)})


@pytest.mark.parametrize(
    ("extra", "check", "detail"),
    [
        (("--anonymous-auth=true",), "apiserver.anonymous-auth", "--anonymous-auth is true"),
        (
            ("--authorization-mode", "AlwaysAllow"),
            "apiserver.authorization",
            "--authorization-mode lacks Node; --authorization-mode lacks RBAC; "
            "--authorization-mode includes AlwaysAllow",
        ),
        (
            ("--enable-admission-plugins=AlwaysAdmit",),
            "apiserver.admission",
            "NodeRestriction is not admitted; AlwaysAdmit is enabled",
        ),
        (
            ("--audit-log-maxage=7",),
            "apiserver.audit",
            "--audit-log-maxage is 7, the site says 30",
        ),
        (("--profiling",), "apiserver.profiling", "--profiling is true"),
        (("--tls-cert-file=",), "apiserver.tls", "--tls-cert-file is not set"),
    ],
)
def test_apiserver_flag_fails(
    example_site: Site, extra: tuple[str, ...], check: str, detail: str
) -> None:
    f = with_args(healthy(example_site, "controller-0"), "kube-apiserver", *extra)
    assert failed(evaluate(f, example_site, example_site.machine("controller-0"))) == {
        check: detail
    }


def test_apiserver_not_running_is_unknown_and_fails(example_site: Site) -> None:
    f = healthy(example_site, "controller-0")
    f = replace(f, processes={"etcd": f.processes["etcd"]})
    results = evaluate(f, example_site, example_site.machine("controller-0"))
    unknown = {r.check.id for r in results if r.status == "unknown"}
    assert unknown == {c.id for c in CHECKS if c.id.startswith("apiserver.")}
    assert all(
        r.detail == "kube-apiserver is not running" for r in results if r.status == "unknown"
    )


def test_site_choices_are_reported(example_site: Site) -> None:
    text = (
        example_text()
        .replace("at_rest: true", "at_rest: false")
        .replace(
            "  enabled: true                  # API audit",
            "  enabled: false                  # API audit",
        )
    )
    site, _ = parse_site(text, "site.yaml")
    assert not site.audit.enabled and not site.encryption.at_rest
    f = healthy(site, "controller-0")
    got = failed(evaluate(f, site, site.machine("controller-0")))
    assert got == {
        "apiserver.audit": "auditing is off in the site file (audit.enabled: false)",
        "apiserver.encryption": "encryption at rest is off in the site file "
        "(encryption.at_rest: false)",
    }


@pytest.mark.parametrize(
    ("extra", "check", "detail"),
    [
        (("--client-cert-auth=false",), "etcd.client-tls", "--client-cert-auth is false"),
        (("--peer-auto-tls",), "etcd.peer-tls", "--peer-auto-tls is true"),
        (("--key-file=",), "etcd.client-tls", "--key-file is not set"),
    ],
)
def test_etcd_flag_fails(
    example_site: Site, extra: tuple[str, ...], check: str, detail: str
) -> None:
    f = with_args(healthy(example_site, "controller-0"), "etcd", *extra)
    assert failed(evaluate(f, example_site, example_site.machine("controller-0"))) == {
        check: detail
    }


def with_kubelet_config(f: SecurityFacts, old: str, new: str) -> SecurityFacts:
    text = f.contents[paths.KUBELET_CONFIG]
    assert text is not None and old in text
    return replace(f, contents={paths.KUBELET_CONFIG: text.replace(old, new)})


@pytest.mark.parametrize(
    ("old", "new", "check", "detail"),
    [
        (
            "  anonymous:\n    enabled: false",
            "  anonymous:\n    enabled: true",
            "kubelet.anonymous-auth",
            "authentication.anonymous.enabled is true",
        ),
        (
            "  mode: Webhook",
            "  mode: AlwaysAllow",
            "kubelet.authorization",
            "authorization mode is AlwaysAllow, want Webhook",
        ),
        (
            "readOnlyPort: 0",
            "readOnlyPort: 10255",
            "kubelet.read-only-port",
            "readOnlyPort is 10255",
        ),
        ("readOnlyPort: 0\n", "", "kubelet.read-only-port", "readOnlyPort is unset"),
    ],
)
def test_kubelet_config_fails(
    example_site: Site, old: str, new: str, check: str, detail: str
) -> None:
    f = with_kubelet_config(healthy(example_site, "worker-0"), old, new)
    assert failed(evaluate(f, example_site, example_site.machine("worker-0"))) == {check: detail}


def test_kubelet_flags_override_the_config(example_site: Site) -> None:
    f = with_args(healthy(example_site, "worker-0"), "kubelet", "--anonymous-auth=true")
    assert failed(evaluate(f, example_site, example_site.machine("worker-0"))) == {
        "kubelet.anonymous-auth": "--anonymous-auth is true"
    }


def test_kubelet_config_elsewhere_is_unknown(example_site: Site) -> None:
    f = with_args(healthy(example_site, "worker-0"), "kubelet", "--config=/tmp/other.yaml")
    got = failed(evaluate(f, example_site, example_site.machine("worker-0")))
    assert set(got) == {c.id for c in CHECKS if c.id.startswith("kubelet.")}
    assert got["kubelet.read-only-port"] == (
        "the kubelet runs with --config=/tmp/other.yaml, which was not read"
    )


def test_firewall_not_loaded(example_site: Site) -> None:
    f = replace(
        healthy(example_site, "worker-0"),
        nft=Nft(1, "Error: No such file or directory\nlist table inet kubeprem"),
        services={firewall.SERVICE: ("disabled", "inactive")},
    )
    got = failed(evaluate(f, example_site, example_site.machine("worker-0")))
    assert got == {
        "firewall.loaded": "table inet kubeprem is not loaded (list table inet kubeprem)",
        "firewall.persistent": "kubeprem-firewall.service is disabled and inactive; "
        "want enabled and active",
    }


def test_firewall_with_stale_rules(example_site: Site) -> None:
    # a controller's table loaded on a worker: the worker's sets are missing
    listing = (LISTINGS / "controller-0.txt").read_text()
    f = replace(healthy(example_site, "worker-0"), nft=Nft(0, listing))
    got = failed(evaluate(f, example_site, example_site.machine("worker-0")))
    assert got == {
        "firewall.loaded": "sets missing (stale rules?): kubelet_v4, nodeports_v4",
    }


def test_firewall_without_nft_is_unknown(example_site: Site) -> None:
    f = replace(healthy(example_site, "worker-0"), nft=Nft(None))
    r = by_id(evaluate(f, example_site, example_site.machine("worker-0")))["firewall.loaded"]
    assert r.status == "unknown" and r.failed


# -- flags -----------------------------------------------------------------------


def test_parse_flags() -> None:
    argv = [
        "/usr/local/bin/kube-apiserver",
        "--a=1",
        "--b",
        "2",
        "--profiling",
        "false",  # a boolean flag takes no separate value: this is a stray argument
        "-v=2",
        "--c=x=y",
        "--a=3",
        "--last",
    ]
    assert parse_flags(argv) == {
        "a": "3",
        "b": "2",
        "profiling": "true",
        "v": "2",
        "c": "x=y",
        "last": "true",
    }


# -- the fact script ---------------------------------------------------------------


def b64(argv: list[str]) -> str:
    return base64.b64encode(b"\0".join(a.encode() for a in argv) + b"\0").decode()


def sample_output() -> str:
    config = base64.b64encode(b"readOnlyPort: 0\n").decode()
    return "\n".join(
        [
            "@@kubeprem security 1",
            "@@kubeprem virt",
            "container systemd-nspawn",
            f"@@kubeprem stat {paths.CA_KEY}",
            "600 root root regular file",
            f"@@kubeprem stat {paths.ETCD_DATA}",
            "700 root root directory",
            f"@@kubeprem stat {paths.SA_KEY}",
            "missing",
            "@@kubeprem proc kubelet",
            "@@kubeprem proc etcd",
            f"@@kubeprem cmdline kubelet 412 {b64(['/usr/local/bin/kubelet', '--v=2'])}",
            f"@@kubeprem content {paths.KUBELET_CONFIG}",
            config,
            "@@kubeprem content-missing /etc/x",
            "@@kubeprem nft 0",
            "table inet kubeprem {",
            "}",
            f"@@kubeprem service {firewall.SERVICE}",
            "enabled enabled",
            "active active",
            "@@kubeprem end",
            "",
        ]
    )


def test_parse_sample() -> None:
    f = facts.parse("worker-0", sample_output())
    assert f.container == "systemd-nspawn"
    assert f.files[paths.CA_KEY] == FileStat(0o600, "root", "root", "regular file")
    assert f.files[paths.ETCD_DATA] is not None and f.files[paths.ETCD_DATA].directory
    assert f.files[paths.SA_KEY] is None
    assert f.processes == {"kubelet": (("/usr/local/bin/kubelet", "--v=2"),), "etcd": ()}
    assert f.contents == {paths.KUBELET_CONFIG: "readOnlyPort: 0\n", "/etc/x": None}
    assert f.nft == Nft(0, "table inet kubeprem {\n}")
    assert f.services == {firewall.SERVICE: ("enabled", "active")}


def test_parse_without_nft_or_systemctl() -> None:
    out = "@@kubeprem security 1\n@@kubeprem virt\ncontainer none\n@@kubeprem nft missing\n"
    out += f"@@kubeprem service {firewall.SERVICE}\n@@kubeprem end\n"
    f = facts.parse("h", out)
    assert f.container is None and f.nft == Nft(None, "")
    assert f.services[firewall.SERVICE] == ("unknown", "unknown")


@pytest.mark.parametrize("output", ["", "hello\n", "@@kubeprem security 1\n@@kubeprem virt\n"])
def test_parse_refuses_foreign_or_truncated_output(output: str) -> None:
    with pytest.raises(OperationError, match="h: security facts"):
        facts.parse("h", output)


def test_wanted_and_command(example_site: Site) -> None:
    w = facts.wanted(example_site, example_site.machine("controller-0"))
    assert w.processes == ("etcd", "kube-apiserver")
    assert paths.ETCD_DATA in w.stat and paths.CA_KEY in w.stat
    assert w.read == () and w.units == (firewall.SERVICE,)
    argv = facts.command(w)
    assert argv[:2] == ["sh", "-c"] and argv[3] == "kubeprem-security"
    assert argv.count("--") == 3
    w = facts.wanted(example_site, example_site.machine("worker-0"))
    assert w.processes == ("kubelet",) and w.read == (paths.KUBELET_CONFIG,)
    with pytest.raises(ValueError):
        facts.command(facts.Wanted(("relative",), (), (), ()))
    with pytest.raises(ValueError):
        facts.command(facts.Wanted((), ("x; rm",), (), ()))


def test_gather_through_the_transport(example_site: Site) -> None:
    fake = FakeTransport("worker-0")
    fake.handle(
        ["sh", "-c", facts.SCRIPT, "kubeprem-security"], lambda *_: (0, sample_output(), "")
    )
    got = asyncio.run(facts.gather(fake, example_site, example_site.machine("worker-0")))
    assert got.host == "worker-0" and got.container == "systemd-nspawn"
    assert fake.calls[0].step == "gather security facts"

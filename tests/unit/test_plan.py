"""Plan: diff cases from tests/fixtures/plan/diff-cases.yaml, the JSON form,
the readable rendering, and secret masking."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from kubeprem.components.base import File, Rendered
from kubeprem.plan.diff import diff, diff_host, wanted
from kubeprem.plan.facts import FileFacts, HostFacts, ServiceFacts
from kubeprem.plan.model import (
    PREVIEW_LIMIT,
    Change,
    DaemonReload,
    EnableService,
    Plan,
    ReloadService,
    RestartService,
    RunCommand,
    StartService,
    WriteFile,
)
from kubeprem.plan.render import to_text

CASES_FILE = Path(__file__).parents[1] / "fixtures" / "plan" / "diff-cases.yaml"
CASES: list[dict[str, Any]] = YAML(typ="safe").load(CASES_FILE.read_text())


def rendered_from(case: dict[str, Any]) -> list[Rendered]:
    out = []
    for comp in case["desired"]:
        files = tuple(
            File(
                f["path"],
                f["text"].encode(),
                int(f.get("mode", "0644"), 8),
                bool(f.get("secret", False)),
            )
            for f in comp["files"]
        )
        out.append(
            Rendered(
                comp["component"],
                files,
                tuple(comp["services"]),
                reloads=tuple(comp.get("reloads", ())),
            )
        )
    return out


def facts_from(case: dict[str, Any], rendered: list[Rendered]) -> HostFacts:
    observed = case.get("observed") or {}
    seen = observed.get("files") or {}
    paths, services = wanted(rendered)
    files: dict[str, FileFacts | None] = {}
    for path in paths:
        obs = seen.get(path)
        if obs is None:
            files[path] = None
            continue
        if "text" in obs:
            sha: str | None = hashlib.sha256(obs["text"].encode()).hexdigest()
        else:
            sha = None if obs["sha256"] == "unreadable" else obs["sha256"]
        kind = obs.get("kind", "regular file")
        files[path] = FileFacts(sha, int(obs["mode"], 8), "root", "root", kind)
    svc = {
        s: ServiceFacts(**(observed.get("services") or {})[s])
        for s in services
        if s in (observed.get("services") or {})
    }
    return HostFacts("h1", systemd=True, files=files, services=svc)


def compact(change: Change) -> str:
    if isinstance(change, WriteFile):
        return f"write-file {change.path} {change.why}"
    if isinstance(change, DaemonReload):
        return "daemon-reload " + " ".join(change.units)
    if isinstance(change, RestartService | ReloadService):
        return f"{change.action} {change.service} " + " ".join(change.because)
    if isinstance(change, EnableService | StartService):
        return f"{change.action} {change.service}"
    return change.describe()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_diff_case(case: dict[str, Any]) -> None:
    rendered = rendered_from(case)
    hp = diff_host("h1", rendered, facts_from(case, rendered))
    assert [compact(c) for c in hp.changes] == case["changes"]
    assert [f"{n.subject}: {n.reason}" for n in hp.noops] == case["noops"]


def test_changes_are_in_rank_order_files_first() -> None:
    case = CASES[0]
    rendered = rendered_from(case)
    hp = diff_host("h1", rendered, facts_from(case, rendered))
    ranks = [int(c.rank) for c in hp.changes]
    assert ranks == sorted(ranks)


def test_conflicting_renderings_of_one_path_are_a_bug() -> None:
    a = Rendered("a", (File.text("/etc/x", "1"),))
    b = Rendered("b", (File.text("/etc/x", "2"),))
    with pytest.raises(ValueError, match="rendered differently by a and b"):
        diff_host("h1", [a, b], HostFacts("h1", files={"/etc/x": None}))


def test_missing_facts_are_a_bug_not_a_change() -> None:
    with pytest.raises(ValueError, match="no facts gathered for /etc/x"):
        diff_host("h1", [Rendered("a", (File.text("/etc/x", "1"),))], HostFacts("h1"))


SECRET = b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"


def _plan_with_secret() -> Plan:
    rendered = [
        Rendered(
            "etcd",
            (
                File("/etc/kubernetes/pki/etcd/server.key", SECRET, 0o600, secret=True),
                File.text("/etc/etcd/etcd.env", "A=1\nB=2\nC=3\n"),
            ),
            ("etcd.service",),
        )
    ]
    facts = HostFacts(
        "controller-1",
        files={
            "/etc/kubernetes/pki/etcd/server.key": FileFacts("0" * 64, 0o600),
            "/etc/etcd/etcd.env": FileFacts("1" * 64, 0o644),
        },
        services={"etcd.service": ServiceFacts("enabled", "active")},
    )
    converged = HostFacts("worker-1")
    return diff(
        {"controller-1": rendered, "worker-1": []}, {"controller-1": facts, "worker-1": converged}
    )


def test_json_shape_and_converged_hosts_have_empty_lists() -> None:
    plan = _plan_with_secret()
    data = json.loads(plan.to_json())
    assert list(data) == ["hosts"]
    assert data["hosts"]["worker-1"] == []
    actions = [c["action"] for c in data["hosts"]["controller-1"]]
    assert actions == ["write-file", "write-file", "restart-service"]
    key = data["hosts"]["controller-1"][0]
    assert key == {
        "action": "write-file",
        "path": "/etc/kubernetes/pki/etcd/server.key",
        "why": "content",
        "component": "etcd",
        "mode": "0600",
        "secret": True,
    }
    verbose = json.loads(plan.to_json(verbose=True))
    assert verbose["noops"]["worker-1"] == [
        {"subject": "daemon-reload", "reason": "no unit file changes"}
    ]


def test_secrets_never_appear_in_text_json_or_repr() -> None:
    plan = _plan_with_secret().with_previews(
        {"controller-1": {"/etc/kubernetes/pki/etcd/server.key": SECRET.decode()}}
    )
    key_change = plan.hosts["controller-1"].changes[0]
    assert isinstance(key_change, WriteFile) and key_change.old_text is None
    shown = to_text(plan, verbose=True) + plan.to_json(verbose=True) + repr(plan)
    assert "PRIVATE KEY" not in shown and "MIIE" not in shown
    assert "(secret: contents not shown)" in shown


def test_text_shows_unified_diff_counts_and_summary() -> None:
    plan = _plan_with_secret()
    assert plan.preview_paths("controller-1") == ("/etc/etcd/etcd.env",)
    plan = plan.with_previews({"controller-1": {"/etc/etcd/etcd.env": "A=1\nB=1\nC=3\n"}})
    text = to_text(plan)
    assert "controller-1: 2 files, 1 restart" in text
    assert "worker-1: no changes" in text
    assert "-B=1" in text and "+B=2" in text
    assert (
        "> restart etcd.service (/etc/kubernetes/pki/etcd/server.key, /etc/etcd/etcd.env changed)"
        in text
    )
    assert text.rstrip().endswith("Plan: 3 changes on 1 of 2 hosts; 1 converged.")


def test_long_diffs_are_truncated() -> None:
    new = "".join(f"line {i}\n" for i in range(200))
    rendered = [Rendered("x", (File.text("/etc/x.conf", new),))]
    plan = diff({"h": rendered}, {"h": HostFacts("h", files={"/etc/x.conf": None})})
    assert "+line 0" not in to_text(plan)  # a new file's text only with --verbose
    text = to_text(plan, verbose=True, max_diff_lines=10)
    assert "+line 6" in text and "+line 7" not in text  # 3 header lines + 7
    assert "... 193 more diff lines" in text


def test_converged_plan_summary_and_verbose_reasons() -> None:
    rendered = [Rendered("x", (File.text("/etc/x", "a"),), ("x.service",))]
    facts = HostFacts(
        "h",
        files={"/etc/x": FileFacts(hashlib.sha256(b"a").hexdigest(), 0o644)},
        services={"x.service": ServiceFacts("enabled", "active")},
    )
    plan = diff({"h": rendered}, {"h": facts})
    assert plan.empty and plan.to_dict() == {"hosts": {"h": []}}
    text = to_text(plan, verbose=True)
    assert "Plan: no changes; all 1 hosts converged." in text
    assert "= x.service: active, and none of its files change" in text


def test_later_phases_add_commands_in_rank_order() -> None:
    plan = _plan_with_secret().with_changes(
        "worker-1",
        [
            RunCommand(
                ("ip", "route", "replace", "10.200.1.0/24", "via", "10.240.0.21"),
                "route to pod CIDR",
            )
        ],
    )
    assert plan.to_dict()["hosts"]["worker-1"] == [
        {
            "action": "run-command",
            "summary": "route to pod CIDR",
            "argv": ["ip", "route", "replace", "10.200.1.0/24", "via", "10.240.0.21"],
        }
    ]
    assert "$ route to pod CIDR" in to_text(plan)


# -- previews: which files are read for a diff, and what is attached ------------------


def _content_change(*files: File) -> HostFacts:
    other = FileFacts("0" * 64, 0o644)
    return HostFacts("h", files={f.path: other for f in files})


def test_preview_paths_skip_secrets_binaries_big_and_non_text_files() -> None:
    files = (
        File.text("/etc/a.conf", "a\n"),
        File("/etc/key.pem", b"-----BEGIN PRIVATE KEY-----\n", 0o600, secret=True),
        File("/usr/local/bin/etcd", b"ELF", 0o755, known_sha256="1" * 64),
        File("/etc/big.conf", b"x" * (PREVIEW_LIMIT + 1)),
        File("/etc/latin1.conf", "caf\u00e9\n".encode("latin-1")),
        File("/etc/nul.conf", b"a\0b"),
        File.text("/etc/b.conf", "b\n"),
    )
    p = diff({"h": [Rendered("x", files)]}, {"h": _content_change(*files)})
    assert p.preview_paths("h") == ("/etc/a.conf", "/etc/b.conf")
    assert p.preview_paths("h", most=1) == ("/etc/a.conf",)
    assert p.preview_paths("nobody") == ()


def test_a_current_text_that_holds_a_key_is_not_attached() -> None:
    files = (File.text("/etc/a.conf", "a\n"), File.text("/etc/b.conf", "b\n"))
    p = diff({"h": [Rendered("x", files)]}, {"h": _content_change(*files)})
    p = p.with_previews(
        {
            "h": {
                "/etc/a.conf": "old a\n",
                "/etc/b.conf": "users:\n- user:\n    client-key-data: LS0t\n",
            }
        }
    )
    old = {c.path: c.old_text for c in p.hosts["h"].changes if isinstance(c, WriteFile)}
    assert old == {"/etc/a.conf": "old a\n", "/etc/b.conf": None}
    assert "LS0t" not in to_text(p)

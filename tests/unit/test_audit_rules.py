"""Every audit rule fires on its positive fixture and stays quiet on its negative one.

Fixtures: tests/fixtures/audit/<rule-id>/fire.yaml (first line ``# expect: N``,
the number of findings of that rule) and pass.yaml (none not accepted).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kubeprem.apps.audit import RULES, AuditOptions, Severity, audit_objects, load_paths

FIXTURES = Path(__file__).parents[1] / "fixtures" / "audit"
IDS = [r.id for r in RULES]


def _findings(path: Path, rule_id: str, **options: bool) -> list:
    found = audit_objects(load_paths([str(path)]), AuditOptions(**options))
    return [f for f in found if f.rule == rule_id]


def test_rule_table_is_well_formed() -> None:
    assert len(IDS) == len(set(IDS)), "rule IDs must be unique"
    for rule in RULES:
        assert re.fullmatch(r"KP\d{3}", rule.id)
        assert rule.title and "\n" not in rule.title and rule.title.endswith(".")
        assert rule.fix and "\n" not in rule.fix
        assert isinstance(rule.severity, Severity)


def test_every_rule_has_positive_and_negative_fixtures() -> None:
    for rule_id in IDS:
        assert (FIXTURES / rule_id / "fire.yaml").is_file(), f"{rule_id}: no fire.yaml"
        assert (FIXTURES / rule_id / "pass.yaml").is_file(), f"{rule_id}: no pass.yaml"
    assert sorted(p.name for p in FIXTURES.iterdir()) == sorted(IDS), "fixture for unknown rule"


@pytest.mark.parametrize("rule_id", IDS)
def test_rule_fires_on_positive_fixture(rule_id: str) -> None:
    path = FIXTURES / rule_id / "fire.yaml"
    expect = re.match(r"# expect: (\d+)", path.read_text())
    assert expect, f"{path} must start with '# expect: N'"
    found = _findings(path, rule_id)
    assert len(found) == int(expect[1]), [f.message for f in found]
    for f in found:
        assert f.file == str(path) and f.line is not None and f.line > 1
        assert f.message and f.fix and f.kind and f.name
        assert f.accepted is None


@pytest.mark.parametrize("rule_id", IDS)
def test_rule_is_quiet_on_negative_fixture(rule_id: str) -> None:
    path = FIXTURES / rule_id / "pass.yaml"
    found = [f for f in _findings(path, rule_id) if f.accepted is None]
    assert found == [], [f.message for f in found]


def test_storage_class_is_an_error_without_a_default_class() -> None:
    path = FIXTURES / "KP060" / "fire.yaml"
    assert {f.severity for f in _findings(path, "KP060")} == {Severity.INFO}
    strict = _findings(path, "KP060", no_default_storage_class=True)
    assert len(strict) == 2 and {f.severity for f in strict} == {Severity.ERROR}
    assert "stays Pending" in strict[0].message


def test_findings_point_at_the_offending_line() -> None:
    path = FIXTURES / "KP010" / "fire.yaml"
    lines = path.read_text().splitlines()
    for f in _findings(path, "KP010"):
        assert lines[f.line - 1].strip().startswith("path:")


def test_accepted_findings_keep_their_reason() -> None:
    found = audit_objects(load_paths([str(FIXTURES / "KP090" / "pass.yaml")]))
    reasons = {f.rule: f.accepted for f in found}
    assert reasons["KP081"] == "FreeSWITCH needs NET_ADMIN and SYS_NICE for RTP, and IPC_LOCK"
    assert reasons["KP082"] == "SIP needs the node's address"
    assert reasons["KP080"] == "kernel tuning at start"
    assert reasons["KP022"] == reasons["KP023"] == "probes come with the chart's next release"
    assert all(f.accepted for f in found if f.rule != "KP020" and f.rule != "KP021")


def test_an_accept_without_reason_accepts_nothing() -> None:
    found = audit_objects(load_paths([str(FIXTURES / "KP090" / "fire.yaml")]))
    messages = [f.message for f in found if f.rule == "KP090"]
    assert any("KP082 is accepted without a reason" in m for m in messages)
    assert any("'KP999' is not a rule" in m for m in messages)
    assert any("'whatever'" in m for m in messages)
    host = [f for f in found if f.rule == "KP082"]
    assert host and host[0].accepted is None

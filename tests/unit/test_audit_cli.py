"""`kubeprem audit`: reading files, folders, stdin and Lists; output formats; exit status."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kubeprem.apps.audit import ManifestError, audit_objects, load_paths, parse_manifests
from kubeprem.apps.audit.formats import to_sarif
from kubeprem.apps.audit.rules import RULES
from kubeprem.cli.main import main

FIXTURES = Path(__file__).parents[1] / "fixtures"
THESIS = FIXTURES / "thesis"

GOOD_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: ok
spec:
  containers:
    - name: app
      image: example/app:1.0
      resources:
        requests: {cpu: 100m, memory: 64Mi}
        limits: {memory: 64Mi}
      readinessProbe: {tcpSocket: {port: 80}}
      livenessProbe: {tcpSocket: {port: 80}}
"""


def test_multi_document_file_keeps_each_objects_line() -> None:
    found = parse_manifests("# c\n---\n" + GOOD_POD + "---\n\n" + GOOD_POD, "x.yaml")
    assert [m.line for m in found] == [3, 18]
    assert found[1].line_of(("spec", "containers", 0, "image")) == 25


def test_list_objects_and_json() -> None:
    text = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {"kind": "Pod", "metadata": {"name": "a"}},
                {"kind": "Pod", "metadata": {"name": "b"}},
            ],
        },
        indent=1,
    )
    found = parse_manifests(text, "x.json")
    assert [m.name for m in found] == ["a", "b"]
    assert [m.line for m in found] == [6, 12]


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("a: [1\n", "x.yaml:2", "YAML"),
        ("kind: Pod\nkind: Pod\n", "x.yaml:2", "duplicate key"),
        ("- 1\n- 2\n", "x.yaml:1", "found a list"),
        ("metadata: {name: a}\n", "x.yaml:1", "no 'kind'"),
        ("kind: List\nitems:\n  - 3\n", "x.yaml:3", "item 0"),
    ],
)
def test_bad_input_names_file_and_line(text: str, where: str, what: str) -> None:
    with pytest.raises(ManifestError) as err:
        parse_manifests(text, "x.yaml")
    assert str(err.value).startswith(where + ":") and what in str(err.value)
    assert err.value.exit_status == 2


def test_folders_are_read_recursively(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "pod.yml").write_text(GOOD_POD)
    (tmp_path / "pod.json").write_text(json.dumps({"kind": "Pod", "metadata": {"name": "j"}}))
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.yaml").write_text("broken: [")
    assert sorted(m.name for m in load_paths([str(tmp_path)])) == ["j", "ok"]


def test_audit_objects_takes_plain_dicts() -> None:
    found = audit_objects(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p"},
                "spec": {"hostNetwork": True, "containers": []},
            }
        ]
    )
    assert [(f.rule, f.file, f.line) for f in found] == [("KP082", "<memory>", None)]


def test_clean_input_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pod.yaml").write_text(GOOD_POD)
    assert main(["audit", str(tmp_path)]) == 0
    assert "0 errors, 0 warnings, 0 info in 1 objects" in capsys.readouterr().out


def test_thesis_text_output_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(THESIS)]) == 1
    out = capsys.readouterr().out
    assert f"{THESIS}/freeswitch-deployment.yaml:7: Deployment freeswitch-app" in out
    assert "error   KP010" in out and "fix: " in out
    assert out.rstrip().endswith("5 errors, 29 warnings, 0 info in 8 objects")


def test_fail_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    warn_only = THESIS / "mongo-statefulset.yaml"
    assert main(["audit", str(warn_only)]) == 0
    assert main(["audit", "--fail-on", "warning", str(warn_only)]) == 1
    assert (
        main(["audit", "--fail-on", "info", str(FIXTURES / "audit" / "KP060" / "pass.yaml")]) == 0
    )
    assert (
        main(["audit", "--fail-on", "info", str(FIXTURES / "audit" / "KP060" / "fire.yaml")]) == 1
    )


def test_no_default_storage_class_makes_it_fail(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(FIXTURES / "audit" / "KP060" / "fire.yaml")
    assert main(["audit", path]) == 0
    assert main(["audit", "--no-default-storage-class", path]) == 1


def test_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(GOOD_POD.replace("example/app:1.0", "app")))
    assert main(["audit", "--format", "json", "-"]) == 0
    (finding,) = json.loads(capsys.readouterr().out)
    assert finding["rule"] == "KP030" and finding["file"] == "<stdin>" and finding["line"] == 8


def test_unreadable_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\nmetadata: {name: [\n")
    assert main(["audit", str(bad)]) == 2
    assert f"{bad}:3:" in capsys.readouterr().err
    assert main(["audit", str(tmp_path / "missing.yaml")]) == 2


def test_json_output_fields(capsys: pytest.CaptureFixture[str]) -> None:
    main(["audit", "--format", "json", str(THESIS)])
    findings = json.loads(capsys.readouterr().out)
    assert len(findings) == 34
    required = {"rule", "severity", "kind", "namespace", "name", "file", "line", "message", "fix"}
    for f in findings:
        assert required <= f.keys()
        assert f["severity"] in ("error", "warning", "info")
        assert isinstance(f["line"], int)


def test_sarif_structure(capsys: pytest.CaptureFixture[str]) -> None:
    main(["audit", "--format", "sarif", str(THESIS)])
    log = json.loads(capsys.readouterr().out)
    assert log["version"] == "2.1.0" and "sarif-2.1.0" in log["$schema"]
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [r.id for r in RULES]
    assert all(r["shortDescription"]["text"] and r["help"]["text"] for r in rules)
    assert len(run["results"]) == 34
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note")
        assert result["message"]["text"]
        physical = result["locations"][0]["physicalLocation"]
        assert physical["artifactLocation"]["uri"].endswith(".yaml")
        assert physical["region"]["startLine"] >= 1


def test_sarif_marks_accepted_findings_as_suppressed() -> None:
    found = audit_objects(load_paths([str(FIXTURES / "audit" / "KP080" / "pass.yaml")]))
    results = json.loads(to_sarif(found))["runs"][0]["results"]
    accepted = [r for r in results if r["ruleId"] == "KP080"]
    assert accepted[0]["suppressions"] == [
        {"kind": "inSource", "justification": "the CSI node plugin mounts block devices"}
    ]

"""The rendered monitoring files against the real tools from Debian.

- ``promtool check config`` on prometheus.yml. promtool opens the TLS and
  token files the configuration names, so the test writes throw-away files
  into a temporary folder and points the in-pod paths there: the only edit
  to the rendered text, asserted to hit each path.
- ``promtool check rules`` on every ``*.rules.yml``.
- ``promtool test rules`` on tests/fixtures/monitoring/*.test.yml, which
  cover every alert, firing and not firing.
- ``amtool check-config`` on alertmanager.yml, with and without receivers.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kubeprem.apps.monitoring import Values, load_values, render
from kubeprem.apps.monitoring import layout as L
from kubeprem.site import Site

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "monitoring"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian: prometheus, prometheus-alertmanager)")
    return path


def run(*argv: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120)
    assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def write_tree(files: dict[str, str], root: Path) -> None:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("variant", ["default", "full"])
def test_promtool_check_config(example_site: Site, tmp_path: Path, variant: str) -> None:
    promtool = tool("promtool")
    values = Values() if variant == "default" else load_values(FIXTURES / "values-full.yaml")
    files = render(example_site, values)
    write_tree(files, tmp_path)
    text = files["prometheus/prometheus.yml"]
    stand_ins = {
        L.RULES_DIR: tmp_path / "prometheus" / "rules",
        L.ETCD_CLIENT_DIR: tmp_path / "etcd-client",
        L.SA_DIR: tmp_path / "serviceaccount",
    }
    for pod_path, local in stand_ins.items():
        assert pod_path in text, f"{pod_path} not in prometheus.yml"
        local.mkdir(parents=True, exist_ok=True)
        text = text.replace(pod_path, str(local))
    for name in ("ca.crt", "tls.crt", "tls.key"):
        (tmp_path / "etcd-client" / name).write_text("stand-in\n")
    for name in ("ca.crt", "token"):
        (tmp_path / "serviceaccount" / name).write_text("stand-in\n")
    config = tmp_path / "prometheus-check.yml"
    config.write_text(text, encoding="utf-8")
    out = run(promtool, "check", "config", str(config))
    assert "SUCCESS" in out
    # every rule file was found through the rule_files glob
    assert out.count("SUCCESS: ") >= len([f for f in files if f.endswith(".rules.yml")])


def test_promtool_check_rules(example_site: Site, tmp_path: Path) -> None:
    promtool = tool("promtool")
    files = render(example_site, Values())
    write_tree(files, tmp_path)
    rule_files = sorted(str(p) for p in (tmp_path / "prometheus" / "rules").glob("*.rules.yml"))
    assert rule_files
    run(promtool, "check", "rules", *rule_files)


def test_promtool_unit_tests(example_site: Site, tmp_path: Path) -> None:
    promtool = tool("promtool")
    write_tree(render(example_site, Values()), tmp_path)
    workdir = tmp_path / "prometheus"
    tests = sorted(FIXTURES.glob("*.test.yml"))
    assert tests
    for test in tests:
        shutil.copy(test, workdir / test.name)
    out = run(promtool, "test", "rules", *(t.name for t in tests), cwd=workdir)
    assert "FAILED" not in out


@pytest.mark.parametrize("variant", ["default", "full"])
def test_amtool_check_config(example_site: Site, tmp_path: Path, variant: str) -> None:
    amtool = tool("amtool")
    values = Values() if variant == "default" else load_values(FIXTURES / "values-full.yaml")
    files = render(example_site, values)
    write_tree(files, tmp_path)
    out = run(amtool, "check-config", str(tmp_path / "alertmanager" / "alertmanager.yml"))
    assert "SUCCESS" in out

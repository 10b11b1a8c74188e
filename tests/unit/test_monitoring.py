"""Monitoring renderers: golden files, the audit, the rule table against its
promtool tests and runbook, values errors, and the render command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from kubeprem.apps.audit import audit_objects
from kubeprem.apps.monitoring import Values, alert_names, load_values, objects, render, rules
from kubeprem.apps.monitoring import alertmanager as am
from kubeprem.apps.monitoring.rules import groups
from kubeprem.cli.main import main
from kubeprem.errors import InputError
from kubeprem.site import Site, example_text
from tests.conftest import assert_golden

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "monitoring"
FULL = FIXTURES / "values-full.yaml"
RUNBOOK = ROOT / "docs" / "monitoring.md"


def _variants() -> dict[str, Values]:
    return {"default": Values(), "full": load_values(FULL)}


@pytest.mark.parametrize("variant", ["default", "full"])
def test_render_matches_golden(example_site: Site, variant: str) -> None:
    files = render(example_site, _variants()[variant])
    for rel, text in files.items():
        assert_golden(f"monitoring/{variant}/{rel}", text)
    golden = ROOT / "tests" / "golden" / "monitoring" / variant
    on_disk = {str(p.relative_to(golden)) for p in golden.rglob("*") if p.is_file()}
    assert on_disk == set(files), "golden folder holds files the renderer no longer makes"


@pytest.mark.parametrize("variant", ["default", "full"])
def test_manifests_pass_the_audit(example_site: Site, variant: str) -> None:
    findings = audit_objects(objects(example_site, _variants()[variant]))
    open_findings = [f"{f.rule} {f.kind}/{f.name}: {f.message}" for f in findings if not f.accepted]
    assert open_findings == []


def test_no_secret_material_in_the_render(example_site: Site) -> None:
    objs = objects(example_site, load_values(FULL))
    assert "Secret" not in {o["kind"] for o in objs}
    assert "BEGIN" not in "".join(render(example_site, load_values(FULL)).values())


def test_no_kubernetes_service_discovery(example_site: Site) -> None:
    # Debian's Prometheus 2.42 is built without it and rejects the config
    for text in render(example_site, load_values(FULL)).values():
        assert "kubernetes_sd_configs" not in text


def test_every_machine_is_a_target(example_site: Site) -> None:
    text = render(example_site, load_values(FULL))["prometheus/prometheus.yml"]
    for m in example_site.machines:
        assert f"{m.address}:9100" in text
    for m in example_site.etcd_members:
        assert f"{m.address}:2381" in text  # the metrics listener
    assert ":2379" not in text  # never the key-value port
    for m in example_site.workers:
        assert f"{m.address}:10250" in text


def test_kubelets_are_scraped_through_the_api_server(example_site: Site) -> None:
    """The firewall keeps workers (so Prometheus's pod) off port 10250: the
    kubelet and cAdvisor jobs go to the API server's node proxy instead,
    one target per worker, named by its kubelet's address."""
    from kubeprem.apps.monitoring.scrape import jobs

    by_name = {j["job_name"]: j for j in jobs(example_site, Values())}
    for job, path in (("kubelet", "/metrics"), ("cadvisor", "/metrics/cadvisor")):
        relabel = by_name[job]["relabel_configs"]
        assert relabel[0] == {"source_labels": ["__address__"], "target_label": "instance"}
        assert relabel[1]["replacement"] == f"/api/v1/nodes/${{1}}/proxy{path}"
        assert relabel[1]["source_labels"] == ["node"]
        assert relabel[-1] == {
            "target_label": "__address__",
            "replacement": "kubernetes.default.svc.cluster.local:443",
        }
        nodes = [g["labels"]["node"] for g in by_name[job]["static_configs"]]
        assert nodes == [m.name for m in example_site.workers]
    role = next(o for o in objects(example_site, Values()) if o["kind"] == "ClusterRole")
    resources = {r for rule in role["rules"] for r in rule.get("resources", [])}
    assert "nodes/proxy" in resources


def test_controllers_kube_proxy_and_haproxy_are_scraped_by_default(example_site: Site) -> None:
    from kubeprem.apps.monitoring import layout as L
    from kubeprem.apps.monitoring.scrape import jobs

    by_name = {j["job_name"]: j for j in jobs(example_site, Values())}
    for job, machines, port in (
        ("kube-controller-manager", example_site.controllers, 10257),
        ("kube-scheduler", example_site.controllers, 10259),
        ("kube-proxy", example_site.workers, 10249),
        ("haproxy", example_site.load_balancers, 8405),
    ):
        groups = by_name[job]["static_configs"]
        assert [g["targets"] for g in groups] == [[f"{m.address}:{port}"] for m in machines]
        assert [g["labels"]["node"] for g in groups] == [m.name for m in machines]
    for job in ("kube-controller-manager", "kube-scheduler"):
        # verified against the cluster CA by the IP SAN, with the token
        assert by_name[job]["scheme"] == "https"
        assert by_name[job]["tls_config"] == {"ca_file": L.SA_CA}
        assert by_name[job]["authorization"] == {"credentials_file": L.SA_TOKEN}
    for job in ("kube-proxy", "haproxy"):
        assert "scheme" not in by_name[job]  # plain HTTP, metrics only
    # node exporter stays on the workers unless node-exporter-host is named
    hosts = [g["labels"]["node"] for g in by_name["node-exporter"]["static_configs"]]
    assert hosts == [m.name for m in example_site.workers]


def test_old_exposed_values_still_load_and_scrape_everything(
    example_site: Site, tmp_path: Path
) -> None:
    """``exposed`` once switched these jobs on; an old file still loads, and
    only ``node-exporter-host`` in it changes anything."""
    from kubeprem.apps.monitoring.scrape import jobs

    site = example_site
    path = tmp_path / "values.yaml"
    for text in ("exposed: []\n", "exposed: [kube-proxy, haproxy]\n"):
        path.write_text(text)
        values = load_values(path)
        prom = render(site, values)["prometheus/prometheus.yml"]
        assert prom == render(site, Values())["prometheus/prometheus.yml"]
    by_name = {j["job_name"]: j for j in jobs(site, load_values(FULL))}
    hosts = [g["labels"]["node"] for g in by_name["node-exporter"]["static_configs"]]
    assert hosts == [m.name for m in site.machines]


def test_every_alert_has_severity_summary_description() -> None:
    for g in groups(Values()):
        for a in g.alerts:
            assert a.severity in ("warning", "critical"), a.name
            assert a.summary and a.description, a.name
            assert a.for_, a.name


def test_every_alert_has_a_runbook_paragraph() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    for name in alert_names(Values()):
        assert f"\n### {name}\n" in text, f"docs/monitoring.md has no paragraph for {name}"


def _rule_tests() -> list[dict[str, Any]]:
    yaml = YAML(typ="safe", pure=True)
    cases: list[dict[str, Any]] = []
    for path in sorted(FIXTURES.glob("*.test.yml")):
        doc = yaml.load(path.read_text(encoding="utf-8"))
        for test in doc["tests"]:
            cases += test["alert_rule_test"]
    return cases


def test_promtool_tests_cover_every_alert_firing_and_not() -> None:
    cases = _rule_tests()
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    for name in alert_names(Values()):
        assert name in firing, f"no promtool test where {name} fires"
        assert name in quiet, f"no promtool test where {name} stays quiet"


def test_inhibition_names_real_alerts() -> None:
    names = set(alert_names(Values()))
    assert set(am.ON_NODE) <= names
    assert "KubeletDown" in names and "KubeAPIServerDown" in names


def test_routes_follow_the_receivers() -> None:
    only_webhook = Values.model_validate({"webhook": {"url": "http://h:9/a"}})
    cfg = am.config(only_webhook)
    assert cfg["route"]["receiver"] == "webhook" and "routes" not in cfg["route"]
    assert "smtp_smarthost" not in cfg["global"]
    nobody = am.config(Values())
    assert nobody["receivers"] == [{"name": "nobody"}]
    both = am.config(load_values(FULL))
    assert [r["receiver"] for r in both["route"]["routes"]] == ["webhook", "email"]
    assert both["global"]["smtp_auth_password_file"].endswith("/password")


def test_backup_threshold_follows_the_interval() -> None:
    text = rules.render(Values(etcd_backup_interval_hours=6))["backup.rules.yml"]
    assert "> 2 * 6 * 3600" in text and "for: 12h" in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("webhook: {url: ftp://x}", "webhook.url"),
        ("email: {to: [], from: a@b, smarthost: 'm:25'}", "email.to"),
        ("exposed: [kubelet]", "exposed.0"),
        ("retention: 3", "retention"),
        ("- a\n- b\n", "mapping"),
    ],
)
def test_values_errors_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_values(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_cli_render_writes_and_refuses_foreign_folder(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(example_text())
    out = tmp_path / "mon"
    assert main(["monitoring", "render", str(site), "--out", str(out), "--values", str(FULL)]) == 0
    assert (out / "prometheus" / "prometheus.yml").is_file()
    assert (out / "prometheus" / "rules" / "etcd.rules.yml").is_file()
    assert (out / "alertmanager" / "alertmanager.yml").is_file()
    assert (out / "manifests.yaml").is_file()
    # re-rendering into its own folder is fine
    assert main(["monitoring", "render", str(site), "--out", str(out)]) == 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x").write_text("mine")
    assert main(["monitoring", "render", str(site), "--out", str(foreign)]) == 2
    assert (foreign / "x").read_text() == "mine"


def test_app_jobs_scrape_the_metrics_services_the_app_builders_create(example_site: Site) -> None:
    """The full values' PostgreSQL entry names the Service and ports
    ``kubeprem app deploy postgresql`` creates, selecting the pods of its
    StatefulSet; its job asks DNS for the Service's A records on each port."""
    from kubeprem.apps import workflow
    from kubeprem.apps.catalog import app_def
    from kubeprem.apps.monitoring.scrape import jobs
    from kubeprem.images import image_refs
    from kubeprem.sensitive import Sensitive

    class Passwords:
        def password(self, length: int = 32) -> Sensitive[str]:
            return Sensitive("pw")

    values = load_values(FULL)
    (target,) = [a for a in values.apps if a.namespace == "postgresql"]
    a = app_def("postgresql")
    built = workflow.render(a, a.values.model_validate({}), image_refs(), Passwords())
    by_kind = {(o["kind"], o["metadata"]["name"]): o for o in built.objects}
    service = by_kind[("Service", target.service)]
    assert service["spec"]["clusterIP"] == "None"
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == target.ports
    pod_labels = by_kind[("StatefulSet", "postgresql")]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()

    site = example_site
    (job,) = [j for j in jobs(site, values) if j["job_name"] == "app/postgresql/postgresql-metrics"]
    name = f"postgresql-metrics.postgresql.svc.{site.cluster.domain}"
    assert job["dns_sd_configs"] == [
        {"names": [name], "type": "A", "port": 9187},
        {"names": [name], "type": "A", "port": 8008},
    ]

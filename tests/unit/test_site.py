"""Site file loading: the good example, and every kind of bad input.

Each bad case must fail with file:line:column pointing at the right place,
a message that says what to do, exit status 2, and nothing written.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kubeprem.cli.main import main
from kubeprem.errors import SiteError
from kubeprem.site import example_text, load_site, parse_site

EXAMPLE = example_text()


def edit(old: str, new: str, text: str = EXAMPLE) -> str:
    assert old in text, f"test setup: {old!r} not in the example"
    return text.replace(old, new, 1)


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the nth occurrence of needle."""
    count = 0
    for i, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            count += 1
            if count == nth:
                return i
    raise AssertionError(f"{needle!r} not found")


def test_example_is_valid_and_has_the_thesis_topology() -> None:
    site, _ = parse_site(EXAMPLE, "site.yaml")
    assert [m.name for m in site.controllers] == ["controller-0", "controller-1", "controller-2"]
    assert [m.name for m in site.workers] == ["worker-0", "worker-1", "worker-2"]
    assert len(site.etcd_members) == 3
    assert str(site.api.vip) == "10.240.0.100"
    assert str(site.network.pod_cidr) == "10.200.0.0/16"
    assert str(site.network.service_cidr) == "10.32.0.0/24"
    assert str(site.network.cluster_dns) == "10.32.0.10"
    assert site.encryption.at_rest and site.audit.enabled
    assert {k: str(v) for k, v in site.pod_cidrs.items()} == {
        "worker-0": "10.200.0.0/24",
        "worker-1": "10.200.1.0/24",
        "worker-2": "10.200.2.0/24",
    }


def test_pinned_pod_cidr_is_kept_and_never_reused() -> None:
    text = edit(
        "    address: 10.240.0.21\n    roles: [worker]",
        "    address: 10.240.0.21\n    roles: [worker]\n    pod_cidr: 10.200.0.0/24",
    )
    site, _ = parse_site(text, "site.yaml")
    assert str(site.pod_cidrs["worker-1"]) == "10.200.0.0/24"
    assert str(site.pod_cidrs["worker-0"]) == "10.200.1.0/24"
    assert len(set(site.pod_cidrs.values())) == 3


# (case id, edited text, (needle whose line the error must name, nth), regex the message must match)
BAD: list[tuple[str, str, tuple[str, int], str]] = [
    ("empty-file", "", ("", 1), r"empty.*kubeprem init"),
    ("comments-only", "# nothing\n", ("", 1), r"empty"),
    ("not-a-mapping", "- a\n- b\n", ("", 1), r"must be a mapping"),
    (
        "yaml-syntax",
        edit("  name: kubeprem ", "  name: [kubeprem "),
        ("kubernetes_version", 1),  # where the parser finds the flow sequence unclosed
        r"YAML: expected ',' or '\]'.*started at line 8",
    ),
    (
        "yaml-bad-indent",
        edit("  domain: cluster.local", " domain: cluster.local"),
        ("domain: cluster.local", 1),
        r"YAML",
    ),
    (
        "duplicate-key",
        edit("  domain: cluster.local", "  domain: cluster.local\n  domain: example.org"),
        ("domain: example.org", 1),
        r"duplicate key.*once",
    ),
    (
        "unknown-key",
        edit("  domain: cluster.local", "  domian: cluster.local"),
        ("domian", 1),
        r"unknown key 'domian'.*allowed here: name, kubernetes_version, domain",
    ),
    (
        "unknown-top-level-key",
        EXAMPLE + "extra: 1\n",
        ("extra: 1", 1),
        r"unknown key 'extra'",
    ),
    (
        "unknown-machine-key",
        edit("    address: 10.240.0.20\n", "    address: 10.240.0.20\n    adress: 1\n"),
        ("adress", 1),
        r"unknown key 'adress'.*address",
    ),
    (
        "version-unquoted-number",
        edit('kubernetes_version: "1.37.2"', "kubernetes_version: 1.20"),
        ("kubernetes_version", 1),
        r"expected text.*quote it",
    ),
    (
        "version-malformed",
        edit('kubernetes_version: "1.37.2"', 'kubernetes_version: "1.20"'),
        ("kubernetes_version", 1),
        r"not a version like",
    ),
    (
        "version-unsupported",
        edit('kubernetes_version: "1.37.2"', 'kubernetes_version: "1.25.3"'),
        ("kubernetes_version", 1),
        r"1\.25\.3 is not supported; use 1\.20\.x, 1\.35\.x, 1\.36\.x, 1\.37\.x",
    ),
    (
        "version-past-end-of-life",
        edit('kubernetes_version: "1.37.2"', 'kubernetes_version: "1.31.4"'),
        ("kubernetes_version", 1),
        r"1\.31\.4 is not supported; use 1\.20\.x, 1\.35\.x, 1\.36\.x, 1\.37\.x",
    ),
    (
        "missing-cluster",
        edit("cluster:\n  name: kubeprem", "clusterx:\n  name: kubeprem"),
        ("clusterx", 1),
        r"unknown key 'clusterx'|missing required key 'cluster'",
    ),
    (
        "missing-vip",
        edit("  vip: 10.240.0.100", "  # no vip"),
        ("api:", 1),
        r"missing required key 'vip' in api",
    ),
    (
        "wrong-type-port",
        edit("  port: 8443", "  port: eighty"),
        ("port: eighty", 1),
        r"api\.port",
    ),
    (
        "port-out-of-range",
        edit("  port: 8443", "  port: 70000"),
        ("port: 70000", 1),
        r"api\.port.*65535",
    ),
    (
        "bad-address",
        edit("address: 10.240.0.20", "address: 10.240.0.300"),
        ("10.240.0.300", 1),
        r"machines\[3\]\.address",
    ),
    (
        "bad-role",
        edit("roles: [worker]", "roles: [workr]"),
        ("workr", 1),
        r"must be 'etcd', 'control-plane', 'worker' or 'lb'",
    ),
    (
        "bad-name",
        edit("name: worker-0", "name: Worker_0"),
        ("Worker_0", 1),
        r"not a valid name",
    ),
    (
        "roles-not-a-list",
        edit("roles: [worker]", "roles: worker"),
        ("roles: worker", 1),
        r"roles",
    ),
    (
        "no-machines",
        EXAMPLE[: EXAMPLE.index("machines:")] + "machines: []\n",
        ("machines: []", 1),
        r"machines.*at least 1",
    ),
    (
        "duplicate-machine-name",
        edit("name: worker-1", "name: worker-0"),
        ("name: worker-0", 2),
        r"'worker-0' is used twice",
    ),
    (
        "duplicate-address",
        edit("address: 10.240.0.21", "address: 10.240.0.20"),
        ("address: 10.240.0.20", 2),
        r"10\.240\.0\.20 is used by more than one machine",
    ),
    (
        "address-outside-node-subnet",
        edit("address: 10.240.0.22", "address: 10.241.0.22"),
        ("10.241.0.22", 1),
        r"outside the node subnet",
    ),
    (
        "even-etcd",
        edit("roles: [etcd, control-plane, lb]", "roles: [control-plane, lb]"),
        ("machines:", 1),
        r"2 machines have the role 'etcd'.*use 1 or 3",
    ),
    (
        "zero-etcd",
        EXAMPLE.replace("roles: [etcd, control-plane, lb]", "roles: [control-plane, lb]"),
        ("machines:", 1),
        r"no machine has the role 'etcd'",
    ),
    (
        "no-control-plane",
        EXAMPLE.replace("roles: [etcd, control-plane, lb]", "roles: [etcd, lb]"),
        ("machines:", 1),
        r"no machine has the role 'control-plane'",
    ),
    (
        "no-worker",
        EXAMPLE.replace("roles: [worker]", "roles: [etcd]").replace(
            "roles: [etcd, control-plane, lb]", "roles: [control-plane, lb]", 1
        ),
        ("machines:", 1),
        r"no machine has the role 'worker'",
    ),
    (
        "no-lb",
        EXAMPLE.replace("roles: [etcd, control-plane, lb]", "roles: [etcd, control-plane]"),
        ("machines:", 1),
        r"no machine has the role 'lb'",
    ),
    (
        "pod-overlaps-node",
        edit("pod_cidr: 10.200.0.0/16", "pod_cidr: 10.240.0.0/16"),
        ("pod_cidr: 10.240.0.0/16", 1),
        r"pod_cidr 10\.240\.0\.0/16 overlaps network\.node_cidr",
    ),
    (
        "service-overlaps-pod",
        edit("service_cidr: 10.32.0.0/24", "service_cidr: 10.200.5.0/24"),
        ("service_cidr: 10.200.5.0/24", 1),
        r"service_cidr .* overlaps network\.pod_cidr",
    ),
    (
        "pod-cidr-host-bits",
        edit("pod_cidr: 10.200.0.0/16", "pod_cidr: 10.200.0.1/16"),
        ("pod_cidr: 10.200.0.1/16", 1),
        r"network\.pod_cidr",
    ),
    (
        "vip-outside-node-subnet",
        edit("vip: 10.240.0.100", "vip: 192.168.1.100"),
        ("vip: 192.168.1.100", 1),
        r"virtual IP .* outside the node subnet",
    ),
    (
        "vip-equals-machine",
        edit("vip: 10.240.0.100", "vip: 10.240.0.11"),
        ("vip: 10.240.0.11", 1),
        r"also the address of machine 'controller-1'",
    ),
    (
        "pod-cidr-too-small",
        edit("pod_cidr: 10.200.0.0/16", "pod_cidr: 10.200.0.0/23"),
        ("pod_cidr: 10.200.0.0/23", 1),
        r"holds 2 /24 node subnets but 3 workers",
    ),
    (
        "cluster-dns-outside-services",
        edit("cluster_dns: 10.32.0.10", "cluster_dns: 10.33.0.10"),
        ("cluster_dns", 1),
        r"outside service_cidr",
    ),
    (
        "cluster-dns-is-kubernetes-service",
        edit("cluster_dns: 10.32.0.10", "cluster_dns: 10.32.0.1"),
        ("cluster_dns", 1),
        r"'kubernetes' Service",
    ),
    (
        "vip-port-equals-apiserver-port",
        edit("  port: 8443", "  port: 6443"),
        ("port: 6443", 1),
        r"api\.port 6443 equals api\.apiserver_port",
    ),
    (
        "pinned-pod-cidr-outside",
        edit(
            "    address: 10.240.0.21\n    roles: [worker]",
            "    address: 10.240.0.21\n    roles: [worker]\n    pod_cidr: 10.201.0.0/24",
        ),
        ("pod_cidr: 10.201.0.0/24", 1),
        r"must be a /24 inside 10\.200\.0\.0/16",
    ),
    (
        "pod-cidr-on-non-worker",
        edit(
            "    address: 10.240.0.10\n",
            "    address: 10.240.0.10\n    pod_cidr: 10.200.9.0/24\n",
        ),
        ("pod_cidr: 10.200.9.0/24", 1),
        r"no worker role",
    ),
    (
        "duplicate-role",
        edit("roles: [worker]", "roles: [worker, worker]"),
        ("roles: [worker, worker]", 1),
        r"listed twice",
    ),
    (
        "bool-as-text",
        edit("at_rest: true", "at_rest: maybe"),
        ("at_rest: maybe", 1),
        r"encryption\.at_rest",
    ),
    (
        "yaml11-no-is-not-false",
        edit("at_rest: true", "at_rest: no"),
        ("at_rest: no", 1),
        r"encryption\.at_rest",
    ),
    (
        "artifacts-bad-source",
        edit("source: go-modules", "source: internet"),
        ("source: internet", 1),
        r"artifacts\.source.*'go-modules', 'debian-source' or 'mirror'",
    ),
]


@pytest.mark.parametrize(
    ("text", "where", "pattern"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_bad_site_names_file_line_and_what_to_do(
    text: str, where: tuple[str, int], pattern: str
) -> None:
    with pytest.raises(SiteError) as info:
        parse_site(text, "site.yaml")
    err = info.value
    assert err.exit_status == 2
    loc = err.location
    assert loc.file == "site.yaml"
    needle, nth = where
    expected_line = line_of(text, needle, nth) if needle else 1
    messages = " | ".join(m for _, m in err.problems)
    assert any(p.line == expected_line for p, _ in err.problems), (
        f"expected a problem on line {expected_line}, got {[(str(p), m) for p, m in err.problems]}"
    )
    assert re.search(pattern, messages), messages
    assert loc.column is not None and loc.column >= 1


def test_there_are_at_least_25_bad_input_cases() -> None:
    assert len(BAD) >= 25


def test_missing_ssh_key_file(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    text = edit("  # key: ~/.ssh/id_ed25519", "  key: keys/deploy")
    site.write_text(text)
    with pytest.raises(SiteError) as info:
        load_site(site)
    assert info.value.location.line == line_of(text, "key: keys/deploy")
    assert "ssh-keygen" in str(info.value)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "deploy").write_text("not checked here\n")
    assert load_site(site).ssh_key() == tmp_path.resolve() / "keys" / "deploy"


def test_default_ssh_key_lives_in_the_state_folder(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(EXAMPLE)
    loaded = load_site(site)
    assert loaded.state_dir == tmp_path.resolve() / ".kubeprem" / "kubeprem"
    assert loaded.ssh_key() == loaded.state_dir / "ssh" / "id_ed25519"


def test_cli_validate_ok_and_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(EXAMPLE)
    assert main(["validate", str(site)]) == 0
    assert "ok: cluster 'kubeprem'" in capsys.readouterr().out
    site.write_text(edit("vip: 10.240.0.100", "vip: 10.240.0.10"))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["validate", str(site)]) == 2
    err = capsys.readouterr().err
    assert f"{site}:{line_of(site.read_text(), 'vip: 10.240.0.10')}:" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_cli_validate_names_the_supported_releases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(edit('kubernetes_version: "1.37.2"', 'kubernetes_version: "1.31.4"'))
    assert main(["validate", str(site)]) == 2
    err = capsys.readouterr().err
    assert f"{site}:{line_of(site.read_text(), 'kubernetes_version')}:" in err
    assert "Kubernetes 1.31.4 is not supported; use 1.20.x, 1.35.x, 1.36.x, 1.37.x" in err
    assert "Traceback" not in err


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "kubeprem init" in capsys.readouterr().err


def test_init_prints_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init"]) == 0
    assert capsys.readouterr().out == EXAMPLE

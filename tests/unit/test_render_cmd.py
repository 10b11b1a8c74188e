"""`kubeprem render`: the folder tree, modes, and safe replacement."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeprem.cli.main import main
from kubeprem.components.render import BY_ROLE, render_machine
from kubeprem.pki.keys import SeededKeySource
from kubeprem.pki.store import issue_pki
from kubeprem.site import Site, example_text


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(example_text())
    return p


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_render_writes_kubeadm_layout_with_modes(site_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["render", str(site_file), "--out", str(out)]) == 0
    c0 = out / "controller-0"
    for rel in [
        "etc/kubernetes/pki/ca.crt",
        "etc/kubernetes/pki/apiserver.crt",
        "etc/kubernetes/pki/apiserver-kubelet-client.crt",
        "etc/kubernetes/pki/apiserver-etcd-client.crt",
        "etc/kubernetes/pki/front-proxy-ca.crt",
        "etc/kubernetes/pki/front-proxy-client.crt",
        "etc/kubernetes/pki/sa.key",
        "etc/kubernetes/pki/sa.pub",
        "etc/kubernetes/pki/etcd/ca.crt",
        "etc/kubernetes/pki/etcd/server.crt",
        "etc/kubernetes/pki/etcd/peer.crt",
        "etc/kubernetes/admin.conf",
        "etc/systemd/system/etcd.service",
        "etc/systemd/system/kube-apiserver.service",
        "etc/haproxy/haproxy.cfg",
        "etc/keepalived/keepalived.conf",
    ]:
        assert (c0 / rel).is_file(), rel
    w1 = out / "worker-1"
    for rel in [
        "etc/systemd/system/kubelet.service",
        "var/lib/kubelet/pki/kubelet.crt",
        "var/lib/kubelet/pki/kubelet-client.crt",
        "etc/kubernetes/kubelet.conf",
        "etc/cni/net.d/10-bridge.conflist",
    ]:
        assert (w1 / rel).is_file(), rel
    # keys and kubeconfigs are private; certificates are not
    assert mode(c0 / "etc/kubernetes/pki/apiserver.key") == 0o600
    assert mode(c0 / "etc/kubernetes/pki/etcd/peer.key") == 0o600
    assert mode(w1 / "var/lib/kubelet/pki/kubelet.key") == 0o600
    assert mode(c0 / "etc/kubernetes/encryption-config.yaml") == 0o600
    assert mode(c0 / "etc/kubernetes/pki/apiserver.crt") == 0o644
    assert mode(out) == 0o700
    # workers never get control-plane secrets
    assert not (w1 / "etc/kubernetes/pki/ca.key").exists()
    assert not (w1 / "etc/kubernetes/pki/sa.key").exists()
    # the worker's pod CIDR is its own
    assert '"10.200.1.0/24"' in (w1 / "etc/cni/net.d/10-bridge.conflist").read_text()
    assert (out / "cluster" / "rbac.yaml").is_file()


def test_rerender_replaces_whole_tree_and_refuses_foreign_folder(
    site_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert main(["render", str(site_file), "--out", str(out)]) == 0
    stray = out / "controller-0" / "stray"
    stray.write_text("old")
    assert main(["render", str(site_file), "--out", str(out)]) == 0
    assert not stray.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious").write_text("keep me")
    assert main(["render", str(site_file), "--out", str(foreign)]) == 2
    assert (foreign / "precious").read_text() == "keep me"


def test_every_role_gets_its_components(example_site: Site) -> None:
    bundle = issue_pki(
        example_site, datetime(2026, 1, 1, tzinfo=UTC), SeededKeySource("render-test")
    )
    by_name = {
        m.name: {r.component for r in render_machine(example_site, m, bundle)}
        for m in example_site.machines
    }
    assert {"etcd", "kube-apiserver", "haproxy", "keepalived"} <= by_name["controller-0"]
    assert "kubelet" not in by_name["controller-0"]
    assert {"kubelet", "containerd", "kube-proxy", "cni"} <= by_name["worker-0"]
    assert "etcd" not in by_name["worker-0"]
    assert len(BY_ROLE) >= 12


def test_services_restart_when_a_file_they_read_changes(example_site: Site) -> None:
    """A renewed certificate restarts exactly the services that use it."""
    from kubeprem.plan.diff import diff_host
    from kubeprem.plan.facts import FileFacts, HostFacts, ServiceFacts
    from kubeprem.plan.model import RestartService

    bundle = issue_pki(example_site, datetime(2026, 1, 1, tzinfo=UTC), SeededKeySource("a"))
    c0 = example_site.machines[0]
    rendered = render_machine(example_site, c0, bundle)
    apiserver = next(r for r in rendered if r.component == "kube-apiserver")
    assert "/etc/kubernetes/pki/apiserver.crt" in apiserver.reads
    etcd = next(r for r in rendered if r.component == "etcd")
    assert "/etc/kubernetes/pki/apiserver.crt" not in etcd.reads

    import hashlib

    files = {}
    for r in rendered:
        for f in r.files:
            digest = hashlib.sha256(f.content).hexdigest()
            if f.path == "/etc/kubernetes/pki/apiserver.crt":
                digest = "0" * 64  # the certificate on the host is an older one
            files[f.path] = FileFacts(digest, f.mode, "root", "root", "regular file")
    services = {s: ServiceFacts("enabled", "active") for r in rendered for s in r.services}
    facts = HostFacts(host="controller-0", files=files, services=services)
    plan = diff_host("controller-0", rendered, facts)
    restarted = {c.service for c in plan.changes if isinstance(c, RestartService)}
    assert restarted == {"kube-apiserver.service"}

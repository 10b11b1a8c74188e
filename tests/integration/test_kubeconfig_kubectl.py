"""`kubectl config view` reads every kubeconfig the PKI writes."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeprem.pki import SystemKeySource, ensure_pki
from kubeprem.pki.store import pki_dir
from kubeprem.site import example_text, load_site

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed"),
]

EXPECTED = {
    "admin.conf": ("https://10.240.0.100:8443", "kubernetes-admin"),
    "controller-manager.conf": ("https://127.0.0.1:6443", "system:kube-controller-manager"),
    "scheduler.conf": ("https://127.0.0.1:6443", "system:kube-scheduler"),
    "kube-proxy.conf": ("https://10.240.0.100:8443", "system:kube-proxy"),
    "kubelet-worker-0.conf": ("https://10.240.0.100:8443", "system:node:worker-0"),
    "kubelet-worker-1.conf": ("https://10.240.0.100:8443", "system:node:worker-1"),
    "kubelet-worker-2.conf": ("https://10.240.0.100:8443", "system:node:worker-2"),
}


def test_kubectl_reads_every_kubeconfig(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(example_text(), encoding="utf-8")
    loaded = load_site(str(site))
    ensure_pki(loaded, datetime.now(UTC), SystemKeySource())
    folder = pki_dir(loaded) / "kubeconfig"
    assert sorted(p.name for p in folder.iterdir()) == sorted(EXPECTED)
    for name, (server, user) in EXPECTED.items():
        proc = subprocess.run(
            [KUBECTL, "config", "view", "--raw", "-o", "json", f"--kubeconfig={folder / name}"],
            capture_output=True,
            text=True,
            check=False,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
        doc = json.loads(proc.stdout)
        assert doc["clusters"][0]["cluster"]["server"] == server
        assert doc["users"][0]["name"] == user
        assert doc["current-context"] == f"{user}@kubeprem"
        assert doc["users"][0]["user"]["client-key-data"]
    # The plain view (no --raw) parses too and keeps the key out of sight.
    plain = subprocess.run(
        [KUBECTL, "config", "view", f"--kubeconfig={folder / 'admin.conf'}"],
        capture_output=True,
        text=True,
        check=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    ).stdout
    assert "client-key-data: DATA+OMITTED" in plain

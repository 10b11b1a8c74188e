"""`kubeprem upgrade apply` on a real lab cluster, from the release before the
newest pinned one to the newest.

One module-scoped cluster brought up on PREVIOUS (`lab up`, `apply`), then
moved to NEWEST while a probe writes and reads a ConfigMap through the VIP
every 100 ms; afterwards a second `upgrade apply` and a downgrade attempt.
Torn down at the end even when a test fails. Times are measured by
bench/upgrade.py (which also runs Redis and PostgreSQL writers through the
upgrade), not asserted here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubeprem.artifacts.gomod import pinned_kubernetes
from kubeprem.cli.main import main
from kubeprem.kube.http import HttpKubeAPI
from kubeprem.site import example_text, load_site
from kubeprem.workflows import chaos
from tests.lab.conftest import require_lab_host, write_lab_site

pytestmark = pytest.mark.lab


def _version_of(text: str) -> str:
    found = re.search(r'^\s*kubernetes_version:\s*"([0-9.]+)"', text, re.M)
    assert found is not None, "no quoted kubernetes_version"
    return found[1]


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


NEWEST = _version_of(example_text())
# the newest pinned release of the minor before the example's: where the upgrade starts
PREVIOUS = max(
    (v for v in pinned_kubernetes() if _key(v)[:2] == (_key(NEWEST)[0], _key(NEWEST)[1] - 1)),
    key=_key,
)


def _set_version(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert f'kubernetes_version: "{old}"' in text
    path.write_text(text.replace(f'kubernetes_version: "{old}"', f'kubernetes_version: "{new}"'))


def _kubelets(api: HttpKubeAPI) -> dict[str, str]:
    return {
        n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"] for n in api.list("Node")
    }


@dataclass
class Upgraded:
    path: Path
    api: HttpKubeAPI
    before: dict[str, str]  # node: kubelet version, before the upgrade
    exit_code: int
    after: dict[str, str]
    probes: int
    failed_probes: int


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upgraded]:
    require_lab_host()
    path = write_lab_site(tmp_path_factory.mktemp("upgrade"))
    _set_version(path, NEWEST, PREVIOUS)
    site = str(path)
    try:
        assert main(["lab", "up", site]) == 0
        # an API server under load may lose an etcd election mid-apply; apply converges
        if main(["apply", site, "--yes"]) != 0:
            assert main(["apply", site, "--yes"]) == 0
        loaded = load_site(path)
        admin = loaded.state_dir / "pki" / "kubeconfig" / "admin.conf"
        before = _kubelets(HttpKubeAPI.from_kubeconfig(admin))
        probe = chaos.Probe(chaos.ProbeTarget.of(loaded))
        probe.start()
        _set_version(path, PREVIOUS, NEWEST)
        try:
            code = main(["upgrade", "apply", site, "--yes"])
        finally:
            time.sleep(2)
            samples = probe.stop()
        # a new client: an old one remembers the release it asked before
        api = HttpKubeAPI.from_kubeconfig(admin)
        yield Upgraded(
            path,
            api,
            before,
            code,
            _kubelets(api),
            len(samples),
            sum(1 for s in samples if not s.ok),
        )
    finally:
        main(["lab", "down", site])


def test_upgrade_moves_every_node_and_the_api_server_to_the_newest_release(
    upgraded: Upgraded,
) -> None:
    assert set(upgraded.before.values()) == {f"v{PREVIOUS}"}
    assert upgraded.exit_code == 0
    assert set(upgraded.after.values()) == {f"v{NEWEST}"} and len(upgraded.after) == 3
    assert upgraded.api.release() == _key(NEWEST)[:2]
    # the API answered through the VIP while the API servers restarted one by one
    assert upgraded.probes > 0 and upgraded.failed_probes < upgraded.probes
    print(f"VIP probes: {upgraded.failed_probes} of {upgraded.probes} failed")
    # every worker uncordoned again
    nodes = upgraded.api.list("Node")
    assert not [n["metadata"]["name"] for n in nodes if n["spec"].get("unschedulable")]


def test_a_second_upgrade_has_nothing_to_do_and_apply_is_converged(upgraded: Upgraded) -> None:
    assert main(["upgrade", "apply", str(upgraded.path), "--yes"]) == 0
    assert main(["apply", str(upgraded.path), "--yes"]) == 0


def test_a_downgrade_is_refused_and_changes_nothing(upgraded: Upgraded) -> None:
    _set_version(upgraded.path, NEWEST, PREVIOUS)
    try:
        assert main(["upgrade", "apply", str(upgraded.path), "--yes"]) == 2
        # apply on a cluster at another release refuses too, pointing to upgrade apply
        assert main(["apply", str(upgraded.path), "--yes"]) == 2
    finally:
        _set_version(upgraded.path, PREVIOUS, NEWEST)
    assert set(_kubelets(upgraded.api).values()) == {f"v{NEWEST}"}

"""The plan's diffs of changed files, against FakeTransport: the current
content is read only for changed text files whose hash differs, in one round
trip per host that has any, never for secrets (keys, kubeconfigs with their
keys, the encryption config), never beyond the size limit; whatever cannot
be read leaves the old and new hashes, and the plan never fails for it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from kubeprem.cli.main import main
from kubeprem.components import paths
from kubeprem.components.render import render_machine
from kubeprem.pki.bundle import PkiBundle
from kubeprem.plan.facts import READ_SCRIPT
from kubeprem.plan.model import PREVIEW_LIMIT, looks_secret
from kubeprem.plan.render import to_text
from kubeprem.site import LoadedSite
from kubeprem.transport.fake import FakeFile, FakeTransport
from kubeprem.workflows import apply as wf
from kubeprem.workflows.execute import execute
from tests.unit.conftest import cli_on_fakes
from tests.unit.test_apply_failures import fakes_for

KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"


def plan(
    loaded: LoadedSite,
    bundle: PkiBundle,
    fakes: Mapping[str, FakeTransport],
    *,
    previews: bool = True,
) -> wf.ClusterPlan:
    return asyncio.run(wf.make_plan(loaded, bundle, None, dict(fakes), previews=previews))


def converged(loaded: LoadedSite, bundle: PkiBundle) -> dict[str, FakeTransport]:
    fakes = fakes_for(loaded)
    asyncio.run(execute(plan(loaded, bundle, fakes, previews=False).hosts, dict(fakes)))
    for fake in fakes.values():
        fake.calls.clear()
    return fakes


def reads(fake: FakeTransport) -> list[tuple[str, ...]]:
    """The paths of each preview read sent to the host."""
    return [c.argv[5:] for c in fake.calls if c.argv[3:4] == ("kubeprem-read",)]


def drift(fake: FakeTransport, path: str, old: str, new: str) -> None:
    f = fake.files[path]
    text = f.content.decode()
    assert new in text, (path, new)
    f.content = text.replace(new, old).encode()


def test_changed_text_files_show_a_unified_diff_and_secrets_never_do(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = converged(loaded, bundle)
    c0 = fakes["controller-1"]
    drift(c0, paths.HAPROXY_CFG, "balance roundrobin", "balance leastconn")
    for secret in (paths.ADMIN_CONF, paths.ENCRYPTION_CONFIG, paths.APISERVER_KEY):
        c0.files[secret] = FakeFile(b"old secret: hunter2\n", 0o600)
    cplan = plan(loaded, bundle, fakes)

    assert reads(c0) == [(paths.HAPROXY_CFG,)]  # only the changed text file
    assert all(not reads(f) for n, f in fakes.items() if n != "controller-1")
    text = to_text(cplan.hosts)
    assert f"--- {paths.HAPROXY_CFG} (now)" in text
    assert f"+++ {paths.HAPROXY_CFG} (planned)" in text
    assert "-    balance roundrobin" in text and "+    balance leastconn" in text
    assert text.count("(secret: contents not shown)") == 3
    assert "hunter2" not in text and "PRIVATE KEY" not in text
    assert "hunter2" not in cplan.hosts.to_json() and "roundrobin" not in cplan.hosts.to_json()


def test_without_previews_or_with_nothing_changed_nothing_is_read(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = converged(loaded, bundle)
    assert plan(loaded, bundle, fakes).hosts.empty
    drift(fakes["worker-0"], KUBELET_CONFIG, "readOnlyPort: 1", "readOnlyPort: 0")
    no_preview = plan(loaded, bundle, fakes, previews=False)
    assert "content changes: sha256" in to_text(no_preview.hosts)
    assert all(not reads(f) for f in fakes.values())


def test_a_file_over_the_limit_or_one_that_cannot_be_read_keeps_its_hashes(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    loaded, bundle = cluster
    fakes = converged(loaded, bundle)
    big = b"# padding\n" * (PREVIEW_LIMIT // 10 + 1)
    fakes["worker-0"].files[KUBELET_CONFIG].content = big
    drift(fakes["worker-1"], KUBELET_CONFIG, "readOnlyPort: 1", "readOnlyPort: 0")
    fakes["worker-1"].fail_command(("sh", "-c", READ_SCRIPT), stderr="broken pipe")
    cplan = plan(loaded, bundle, fakes)
    assert [len(r) for r in (reads(fakes["worker-0"]), reads(fakes["worker-1"]))] == [1, 1]
    text = to_text(cplan.hosts)
    assert "# padding" not in text and "-readOnlyPort" not in text
    assert text.count("content changes: sha256") == 2


def test_the_plan_command_prints_the_diff_and_json_reads_nothing(
    cluster: tuple[LoadedSite, PkiBundle],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    loaded, bundle = cluster
    fakes = converged(loaded, bundle)
    drift(fakes["worker-2"], KUBELET_CONFIG, "readOnlyPort: 1", "readOnlyPort: 0")
    cli_on_fakes(monkeypatch, fakes, bundle)

    assert main(["plan", str(loaded.path), "--json"]) == 0
    assert not reads(fakes["worker-2"])
    capsys.readouterr()
    assert main(["plan", str(loaded.path)]) == 0
    out = capsys.readouterr().out
    assert "-readOnlyPort: 1" in out and "+readOnlyPort: 0" in out
    assert reads(fakes["worker-2"]) == [(KUBELET_CONFIG,)]


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN EC PRIVATE KEY-----\n",
        "users:\n- user:\n    client-key-data: LS0t\n",
        '{"users": [{"user": {"client-key-data": "LS0t"}}]}',
        '{"token": "abc"}',
        "Token: abc\n",
        "PASSWORD=hunter2\n",
        "resources:\n- providers:\n  - aescbc:\n      keys:\n      - name: k\n        secret: c2VjcmV0\n",
    ],
)
def test_a_current_text_holding_a_secret_gets_no_diff(text: str) -> None:
    assert looks_secret(text)


def test_no_file_kubeprem_renders_as_non_secret_looks_secret(
    cluster: tuple[LoadedSite, PkiBundle],
) -> None:
    """Else its changes would show hashes instead of a diff."""
    loaded, bundle = cluster
    site = loaded.site
    checked = 0
    for m in site.machines:
        for r in render_machine(site, m, bundle):
            for f in r.files:
                if f.secret or b"\0" in f.content:
                    continue
                try:
                    text = f.content.decode("utf-8")
                except UnicodeDecodeError:
                    continue
                assert not looks_secret(text), f"{m.name}:{f.path}"
                checked += 1
    assert checked > 50

"""The Go-module builder for real: `go build` of a pinned module with the
go.sum check on, and the set `./run test` prepared for the example site."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubeprem.artifacts import cache as art
from kubeprem.artifacts import gomod
from kubeprem.artifacts.manifest import sha256_file
from kubeprem.errors import OperationError
from kubeprem.site.model import Site

pytestmark = pytest.mark.integration


def test_cni_plugins_build_from_their_pinned_module(tmp_path: Path) -> None:
    """A real build of the smallest module into a fresh folder, sharing the
    machine's Go caches (what `kubeprem artifacts` fills)."""
    build = next(b for b in gomod.builds_for("1.37.2") if b.component.name == "cni-plugins")
    go = gomod.find_go((1, 26, 0))
    said: list[str] = []
    # a cache of its own whose module and build caches are the machine's
    shared = art.default_cache_dir() / "go"
    cache = tmp_path / "cache"
    (cache / "go").mkdir(parents=True)
    for part in ("mod", "build"):
        (shared / part).mkdir(parents=True, exist_ok=True)
        (cache / "go" / part).symlink_to(shared / part)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    gomod.run_build(build, go, cache, out_dir, tmp_path / "build.log", said.append)
    bridge = out_dir / "bridge"
    out = subprocess.run([str(bridge), "--version"], capture_output=True, text=True, check=False)
    assert f"v{build.version}" in (out.stdout + out.stderr)
    assert any(m.startswith("built cni-plugins-") for m in said)
    assert sorted(p.name for p in (cache / "go").iterdir()) == ["build", "mod"], (
        "the work folder was left behind"
    )


def test_a_module_missing_from_go_sum_fails_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-mod=readonly: a go.sum without the module's lines is an error, never a fetch."""
    build = next(b for b in gomod.builds_for("1.37.2") if b.component.name == "cni-plugins")
    real = gomod.module_files(build.folder)
    lines = real["go.sum"].decode().splitlines(keepends=True)
    cut = "".join(
        ln for ln in lines if not ln.startswith("github.com/containernetworking/plugins ")
    )
    monkeypatch.setattr(gomod, "module_files", lambda _f: {**real, "go.sum": cut.encode()})
    go = gomod.find_go((1, 26, 0))
    with pytest.raises(OperationError, match=r"exited with status 1.*(go\.sum|checksum)"):
        gomod.run_build(
            build, go, art.default_cache_dir(), tmp_path, tmp_path / "build.log", lambda _m: None
        )
    assert not (tmp_path / "bridge").exists()


def test_the_example_sites_set_is_complete_and_runs(example_site: Site) -> None:
    found = art.cached_set(art.default_cache_dir(), example_site.cluster.version, "go-modules")
    assert found is not None, "`./run test` prepares this set before the tests"
    assert set(found.files) == set(art.artifact_names(example_site.cluster.version))
    for name, version_arg, expect in (
        ("kubelet", "--version", f"v{example_site.cluster.version}"),
        ("etcd", "--version", "3.6."),
        ("etcdutl", "version", "3.6."),
        ("containerd", "--version", "v2."),
        ("runc", "--version", "runc version 1."),
    ):
        a = found.files[name]
        assert sha256_file(a.path) == a.sha256
        out = subprocess.run([str(a.path), version_arg], capture_output=True, text=True)
        assert expect in out.stdout + out.stderr, (name, out.stdout, out.stderr)

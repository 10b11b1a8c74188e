"""Artifacts from Go modules: the pinned build modules, the build commands,
and the refusals that come before any build."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from kubeprem.artifacts import cache as art
from kubeprem.artifacts import gomod
from kubeprem.components.versions import TABLE
from kubeprem.errors import InputError, PrerequisiteError
from tests.conftest import site_with_version

GO_MODULE_RELEASES = [f"{a}.{b}" for (a, b), row in sorted(TABLE.items()) if row.go_modules]


def require_lines(go_mod: str) -> dict[str, str]:
    """module -> version of every require line (both forms)."""
    out: dict[str, str] = {}
    for m in re.finditer(r"^\s*(?:require\s+)?([a-z0-9.\-/]+\.[a-z]+/\S+)\s+(v\S+)", go_mod, re.M):
        out[m[1]] = m[2]
    return out


def tool_lines(go_mod: str) -> list[str]:
    """The packages of ``tool X`` and ``tool ( ... )`` lines."""
    block = re.search(r"^tool \(\n(.*?)^\)", go_mod, re.M | re.S)
    single = re.findall(r"^tool ([^\s(]\S*)$", go_mod, re.M)
    return single + (block[1].split() if block else [])


def test_every_pinned_kubernetes_release_has_every_component_module() -> None:
    pinned = gomod.pinned_kubernetes()
    assert pinned, "no Kubernetes build module is pinned"
    for version in pinned:
        gomod.check_version(version)  # raises when one component's module is missing


@pytest.mark.parametrize("folder", gomod.pinned_folders())
def test_build_module_pins_its_upstream_release_with_a_go_sum(folder: str) -> None:
    files = gomod.module_files(folder)
    go_mod, go_sum = files["go.mod"].decode(), files["go.sum"].decode()
    version = folder.rsplit("-", 1)[1]
    requires = require_lines(go_mod)
    tools = tool_lines(go_mod)
    assert tools, f"{folder}/go.mod names no tool: go mod tidy would drop the requirements"
    # each tool's module is required at the folder's version, and checked by go.sum
    upstream = {m: v for m, v in requires.items() if any(t.startswith(m) for t in tools)}
    assert upstream, f"{folder}: no require line for the tools' module"
    assert f"v{version}" in set(upstream.values()), f"{folder} requires {upstream}"
    for module, v in upstream.items():
        assert f"{module} {v} h1:" in go_sum, f"{folder}/go.sum lacks {module} {v}"
    assert gomod.go_requirement(go_mod) is not None


@pytest.mark.parametrize("version", gomod.pinned_kubernetes())
def test_kubernetes_staging_modules_replaced_by_their_release(version: str) -> None:
    go_mod = gomod.module_files(f"kubernetes-{version}")["go.mod"].decode()
    minor = version.split(".", 1)[1]
    replaced = re.findall(r"^\s*(k8s\.io/[a-z0-9-]+) => (\S+) (v\S+)$", go_mod, re.M)
    assert len(replaced) >= 30
    for module, target, v in replaced:
        assert target == module and v == f"v0.{minor}", (module, target, v)
    # nothing k8s.io/* stays at the v0.0.0 placeholder without a replacement
    names = {m for m, _, _ in replaced}
    for module, v in require_lines(go_mod).items():
        if v == "v0.0.0":
            assert module in names, module


def test_builds_follow_the_version_table() -> None:
    builds = {b.component.name: b for b in gomod.builds_for("1.37.2")}
    row = TABLE[(1, 37)]
    assert builds["kubernetes"].version == "1.37.2"
    assert builds["etcd"].version == row.etcd_version
    assert builds["containerd"].version == row.containerd_version
    assert builds["runc"].version == row.runc_version
    assert builds["cni-plugins"].version == row.cni_plugins_version
    names = {name for b in builds.values() for name in b.packages}
    assert names == set(art.artifact_names("1.37.2")) == {*art.ARTIFACT_NAMES, "etcdutl"}


def test_build_command_stamps_versions_and_is_reproducible() -> None:
    k8s = gomod.builds_for("1.37.2")[0]
    argv = k8s.argv(Path("/out"), "/usr/local/go/bin/go")
    assert argv[:3] == ["/usr/local/go/bin/go", "build", "-trimpath"]
    ld = argv[argv.index("-ldflags") + 1]
    assert ld.startswith("-s -w ")
    assert "-X k8s.io/component-base/version.gitVersion=v1.37.2" in ld
    assert "-X k8s.io/component-base/version.gitMinor=37" in ld
    assert "buildDate" not in ld  # no time stamp: the same sources give the same file
    assert argv[argv.index("-o") + 1] == "/out/"
    assert "k8s.io/kubernetes/cmd/kubelet" in argv
    runc = next(b for b in gomod.builds_for("1.37.2") if b.component.name == "runc")
    rargv = runc.argv(Path("/out"))
    assert rargv[rargv.index("-tags") + 1] == "seccomp,urfave_cli_no_docs"
    assert "-extldflags '-static'" in rargv[rargv.index("-ldflags") + 1]
    assert runc.cgo and not k8s.cgo


def test_build_environment_checks_sums_and_fetches_no_toolchain(tmp_path: Path) -> None:
    b = gomod.builds_for("1.37.2")[0]
    env = gomod.build_env(tmp_path, b, {"PATH": "/bin", "GOFLAGS": "-mod=mod"})
    assert env["GOFLAGS"].split() == ["-mod=readonly", "-buildvcs=false"]
    assert env["GOTOOLCHAIN"] == "local"
    assert env["GOMODCACHE"] == str(tmp_path / "go" / "mod")
    assert env["GOCACHE"] == str(tmp_path / "go" / "build")
    assert env["CGO_ENABLED"] == "0" and env["PATH"] == "/bin"


@pytest.mark.parametrize(
    ("package", "exe"),
    [
        ("go.etcd.io/etcd/server/v3", "server"),
        ("go.etcd.io/etcd/etcdctl/v3", "etcdctl"),
        ("github.com/opencontainers/runc", "runc"),
        ("k8s.io/kubernetes/cmd/kube-proxy", "kube-proxy"),
        ("github.com/containernetworking/plugins/plugins/ipam/host-local", "host-local"),
    ],
)
def test_exe_name_is_what_go_build_writes(package: str, exe: str) -> None:
    assert gomod.exe_name(package) == exe


def test_unpinned_release_is_refused_before_building() -> None:
    with pytest.raises(InputError, match=r"pins no Go build module for kubernetes-1\.37\.99"):
        gomod.check_version("1.37.99")
    with pytest.raises(InputError, match="not supported"):
        gomod.check_version("1.19.0")


def test_ensure_artifacts_refuses_unpinned_release_and_writes_nothing(tmp_path: Path) -> None:
    site = site_with_version("1.37.99")
    site = site.model_copy(
        update={"artifacts": site.artifacts.model_copy(update={"source": "go-modules"})}
    )
    with pytest.raises(InputError):
        art.ensure_artifacts(site, tmp_path, lambda _: None)
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize(
    ("text", "version"),
    [("go version go1.26.8 linux/amd64", (1, 26, 8)), ("go version go1.19 x", (1, 19, 0))],
)
def test_parse_go_version(text: str, version: tuple[int, int, int]) -> None:
    assert gomod.parse_go_version(text) == version


def test_find_go_names_what_it_found_when_too_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "go"
    fake.write_text("#!/bin/sh\necho 'go version go1.19.8 linux/amd64'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(gomod, "GO_CANDIDATES", ("go",))
    with pytest.raises(PrerequisiteError, match=r"Go 1\.26\.0 or later.*1\.19\.8"):
        gomod.find_go((1, 26, 0))
    assert gomod.find_go((1, 19, 0)) == str(fake)


def test_listing_names_the_module_of_every_artifact() -> None:
    site = site_with_version("1.37.2")
    site = site.model_copy(
        update={"artifacts": site.artifacts.model_copy(update={"source": "go-modules"})}
    )
    rows = art.listing(site)
    assert {r.spec.name for r in rows} == set(art.artifact_names("1.37.2"))
    kubelet = next(r for r in rows if r.spec.name == "kubelet")
    assert "k8s.io/kubernetes@v1.37.2" in kubelet.origin
    assert str(kubelet.spec.destination) == "/usr/local/bin/kubelet"


def test_current_releases_are_built_from_go_modules() -> None:
    assert GO_MODULE_RELEASES, "no release of the table builds from Go modules"
    for release in GO_MODULE_RELEASES:
        a, b = map(int, release.split("."))
        row = TABLE[(a, b)]
        assert row.containerd_config_version == 3
        assert row.etcd_feature_gates and row.kubelet_fail_cgroup_v1


def test_coredns_is_built_for_its_image_from_the_pinned_module(tmp_path: Path) -> None:
    b = gomod.image_build("coredns", "1.15.0")
    assert b.folder == "coredns-1.15.0" and b.folder in gomod.pinned_folders()
    assert "tool github.com/coredns/coredns" in gomod.module_files(b.folder)["go.mod"].decode()
    argv = b.argv(tmp_path, "/usr/local/go/bin/go")
    assert argv[argv.index("-ldflags") + 1] == "-s -w"
    assert argv[-1] == "github.com/coredns/coredns" and "-trimpath" in argv
    assert gomod.exe_name(b.packages["coredns"]) == "coredns"
    env = gomod.build_env(tmp_path, b, {})
    assert env["CGO_ENABLED"] == "0" and env["GOTOOLCHAIN"] == "local"
    # an image's build is no artifact pushed to the machines
    assert all(c.name != "coredns" for c in art.mirror_components("1.37.2"))
    with pytest.raises(InputError, match=r"no Go build module coredns-9\.9\.9"):
        gomod.image_build("coredns", "9.9.9")


def test_image_build_key_follows_the_module_and_the_toolchain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    b = gomod.image_build("coredns", "1.15.0")
    monkeypatch.setattr(gomod, "_go_version", lambda go: (1, 26, 8))
    key = gomod.build_key(b, "go")
    assert key["go"] == "1.26.8" and key["ldflags"] == "-s -w"
    assert set(key) >= {"go.mod", "go.sum"}
    monkeypatch.setattr(gomod, "_go_version", lambda go: (1, 26, 9))
    assert gomod.build_key(b, "go") != key
    files = gomod.module_files(b.folder)
    monkeypatch.setattr(gomod, "module_files", lambda folder: {**files, "go.sum": b"changed\n"})
    assert gomod.build_key(b, "go")["go.sum"] != key["go.sum"]

"""`kubeprem images list|build` on an empty cache, and the missing-source message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubeprem.cli.main import main
from kubeprem.errors import PrerequisiteError
from kubeprem.images import build_images


def test_list_empty_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["images", "list", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "registry.k8s.io/pause:3.10.2" in out and "(not built)" in out
    assert main(["images", "list", "--cache", str(tmp_path), "--json", "--ref", "redis=m/r:1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {d["name"]: d["ref"] for d in doc}["redis"] == "m/r:1"
    assert all(d["archive"] is None for d in doc)


def test_bad_ref_is_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["images", "list", "--cache", str(tmp_path), "--ref", "redis"]) == 2
    assert "expected NAME=REFERENCE" in capsys.readouterr().err


def test_missing_pause_source_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(PrerequisiteError, match="deb-src") as err:
        build_images(["pause"], cache=tmp_path / "c", kubernetes_src=tmp_path / "nowhere")
    assert "apt-get source kubernetes" in str(err.value)


def test_pause_source_is_the_newest_kubernetes_module_then_debian(tmp_path: Path) -> None:
    from kubeprem.images.builder import pause_sources

    mod, deb = tmp_path / "mod", tmp_path / "src"
    for folder in (
        mod / "k8s.io/kubernetes@v1.36.3",
        mod / "k8s.io/kubernetes@v1.37.2",
        mod / "k8s.io/kubernetes@v1.9.0",
        deb / "kubernetes-1.20.5+really1.20.2",
    ):
        (folder / "build/pause/linux").mkdir(parents=True)
        (folder / "build/pause/linux/pause.c").write_text("int main(){}")
    found = [p.parents[3].name for p in pause_sources(mod, deb)]
    assert found == [
        "kubernetes@v1.37.2",
        "kubernetes@v1.36.3",
        "kubernetes@v1.9.0",
        "kubernetes-1.20.5+really1.20.2",
    ]
    assert pause_sources(tmp_path / "none", tmp_path / "none") == []

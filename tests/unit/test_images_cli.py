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

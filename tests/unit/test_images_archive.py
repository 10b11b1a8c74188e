"""The image archive writer: structure, digests and determinism."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from kubeprem.errors import InputError
from kubeprem.images.archive import (
    ANNOTATION_NAME,
    Entry,
    ImageConfig,
    read_archive,
    write_image_archive,
    write_layer,
    write_tar,
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def members(path: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    out = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isfile() else None
            out[m.name] = (m, f.read() if f else b"")
    return out


def sample_entries(tmp_path: Path) -> list[Entry]:
    src = tmp_path / "payload"
    src.write_bytes(b"payload from disk\n")
    return [
        Entry("usr/bin/tool", "file", 0o755, source=src),
        Entry("usr", "dir", 0o755),
        Entry("usr/bin", "dir", 0o755),
        Entry("etc", "dir", 0o755),
        Entry("etc/motd", "file", 0o644, data=b"hello\n"),
        Entry("var/lib/app", "dir", 0o750, uid=101, gid=102),
        Entry("bin", "symlink", target="usr/bin"),
    ]


def test_tar_entries_sorted_fixed_and_numeric(tmp_path: Path) -> None:
    layer = write_layer(sample_entries(tmp_path), tmp_path / "layer.tar")
    with tarfile.open(layer.path) as tar:
        infos = tar.getmembers()
    names = [i.name for i in infos]
    assert names == [
        "bin",
        "etc",
        "etc/motd",
        "usr",
        "usr/bin",
        "usr/bin/tool",
        "var/lib/app",
    ]
    assert all(i.mtime == 0 and i.uname == "" and i.gname == "" for i in infos)
    app = next(i for i in infos if i.name == "var/lib/app")
    assert (app.uid, app.gid, app.mode) == (101, 102, 0o750)
    assert next(i for i in infos if i.name == "bin").linkname == "usr/bin"


def test_same_input_same_digest_whatever_the_order(tmp_path: Path) -> None:
    entries = sample_entries(tmp_path)
    a, b = io.BytesIO(), io.BytesIO()
    digest_a, size_a = write_tar(entries, a)
    digest_b, size_b = write_tar(list(reversed(entries)), b)
    assert (digest_a, size_a) == (digest_b, size_b)
    assert a.getvalue() == b.getvalue()
    assert digest_a == sha256(a.getvalue())
    assert size_a == len(a.getvalue())


def test_hard_links_and_whiteouts(tmp_path: Path) -> None:
    src = tmp_path / "x"
    src.write_bytes(b"same inode")
    entries = [
        Entry("b", "file", 0o755, source=src, inode=(1, 2)),
        Entry("a", "file", 0o755, source=src, inode=(1, 2)),
        Entry("etc/gone", "whiteout"),
    ]
    layer = write_layer(entries, tmp_path / "layer.tar")
    got = members(layer.path)
    assert got["a"][0].isfile() and got["a"][1] == b"same inode"
    assert got["b"][0].islnk() and got["b"][0].linkname == "a"
    assert "etc/.wh.gone" in got and got["etc/.wh.gone"][0].size == 0


def test_rejects_duplicates_and_escapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_tar([Entry("a", "dir"), Entry("a/", "dir")], io.BytesIO())
    with pytest.raises(ValueError):
        write_tar([Entry("a/../../etc", "dir")], io.BytesIO())


def build_archive(tmp_path: Path, name: str = "image.tar") -> tuple[Path, list[Path]]:
    base = write_layer(
        [Entry("etc", "dir", 0o755), Entry("etc/os-release", "file", data=b"ID=debian\n")],
        tmp_path / "base.tar",
        "base",
    )
    top = write_layer(
        [Entry("usr", "dir", 0o755), Entry("usr/bin", "dir"), Entry("usr/bin/app", "file")],
        tmp_path / "top.tar",
        "app",
    )
    config = ImageConfig(
        entrypoint=("/usr/bin/app",),
        cmd=("--flag",),
        user="101:102",
        env=("PATH=/usr/bin",),
        ports=("6379/tcp",),
        workdir="/var/lib/app",
    )
    dest = tmp_path / name
    write_image_archive(dest, "kubeprem.local/app:1.0-bookworm", config, [base, top])
    return dest, [base.path, top.path]


def test_archive_layout_manifest_and_config(tmp_path: Path) -> None:
    archive, layer_paths = build_archive(tmp_path)
    got = members(archive)
    layer_digests = [sha256(p.read_bytes()) for p in layer_paths]

    assert json.loads(got["oci-layout"][1]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(got["index.json"][1])
    [desc] = index["manifests"]
    assert desc["annotations"][ANNOTATION_NAME] == "kubeprem.local/app:1.0-bookworm"
    assert desc["platform"]["os"] == "linux"
    manifest_bytes = got[f"blobs/sha256/{desc['digest'][7:]}"][1]
    assert sha256(manifest_bytes) == desc["digest"] and len(manifest_bytes) == desc["size"]

    manifest = json.loads(manifest_bytes)
    assert [la["digest"] for la in manifest["layers"]] == layer_digests
    config_bytes = got[f"blobs/sha256/{manifest['config']['digest'][7:]}"][1]
    assert sha256(config_bytes) == manifest["config"]["digest"]
    config = json.loads(config_bytes)
    # diff_ids are the sha256 of the uncompressed layer tars, bottom first
    assert config["rootfs"] == {"type": "layers", "diff_ids": layer_digests}
    assert config["config"]["Entrypoint"] == ["/usr/bin/app"]
    assert config["config"]["Cmd"] == ["--flag"]
    assert config["config"]["User"] == "101:102"
    assert config["config"]["ExposedPorts"] == {"6379/tcp": {}}
    assert len(config["history"]) == 2
    for d, p in zip(layer_digests, layer_paths, strict=True):
        assert got[f"blobs/sha256/{d[7:]}"][1] == p.read_bytes()

    # the docker-archive view over the same blobs
    [docker] = json.loads(got["manifest.json"][1])
    assert docker["RepoTags"] == ["kubeprem.local/app:1.0-bookworm"]
    assert docker["Config"] == f"blobs/sha256/{manifest['config']['digest'][7:]}"
    assert docker["Layers"] == [f"blobs/sha256/{d[7:]}" for d in layer_digests]


def test_archive_is_reproducible(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    a, _ = build_archive(tmp_path / "one")
    b, _ = build_archive(tmp_path / "two")
    assert a.read_bytes() == b.read_bytes()
    assert read_archive(a) == read_archive(b)


def test_read_archive_ours_and_docker_save(tmp_path: Path) -> None:
    archive, layer_paths = build_archive(tmp_path)
    info = read_archive(archive)
    assert info.ref == "kubeprem.local/app:1.0-bookworm"
    assert info.manifest_digest is not None
    assert info.layer_digests == tuple(sha256(p.read_bytes()) for p in layer_paths)

    # an older `docker save`: manifest.json, <id>.json, <dir>/layer.tar
    layer = layer_paths[0].read_bytes()
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}}).encode()
    cid = hashlib.sha256(config).hexdigest()
    docker = json.dumps(
        [{"Config": f"{cid}.json", "RepoTags": ["mirror/x:1"], "Layers": ["l/layer.tar"]}]
    ).encode()
    entries = [
        Entry("manifest.json", "file", data=docker),
        Entry(f"{cid}.json", "file", data=config),
        Entry("l", "dir"),
        Entry("l/layer.tar", "file", data=layer),
    ]
    path = tmp_path / "docker.tar"
    with path.open("wb") as f:
        write_tar(entries, f)
    info = read_archive(path)
    assert (info.ref, info.config_digest, info.manifest_digest) == (
        "mirror/x:1",
        f"sha256:{cid}",
        None,
    )


def test_read_archive_refuses_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar")
    with pytest.raises(InputError, match="not a readable image archive"):
        read_archive(bad)
    empty = tmp_path / "empty.tar"
    with empty.open("wb") as f:
        write_tar([Entry("x", "file", data=b"")], f)
    with pytest.raises(InputError, match="not an image archive"):
        read_archive(empty)

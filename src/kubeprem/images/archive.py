"""Deterministic image archives without a Docker engine: layer tars and the
archive that ``ctr -n k8s.io images import`` (and ``docker load``/``podman
load``) accept.

Called by ``kubeprem.images.builder``; pure apart from writing the file it is
given. Same input, same bytes: every tar entry is sorted, has a fixed mtime,
numeric owner only (no user or group names) and no extended attributes, and
every JSON document is written with sorted keys. That makes digests
reproducible, and a layer shared by several images (the Debian base) has the
same bytes, so containerd stores it once.

An archive holds both layouts over the same blobs, as ``docker save`` does
since Docker 25:

- the OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``),
  which containerd imports; the index names the image with the
  ``io.containerd.image.name`` annotation, so ``ctr images ls`` shows our own
  manifest digest;
- the docker-archive ``manifest.json`` (config and layers named by their blob
  paths), for tools that only read that.

Layers are uncompressed tars, so a layer's digest is its diff_id.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from kubeprem.errors import InputError

EPOCH = 0  # mtime of every tar entry
CREATED = "1970-01-01T00:00:00Z"  # "created" of every config and history entry

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
ANNOTATION_NAME = "io.containerd.image.name"
ANNOTATION_REF = "org.opencontainers.image.ref.name"

Kind = Literal["dir", "file", "symlink", "whiteout"]


@dataclass(frozen=True)
class Entry:
    """One entry of a layer. ``path`` is relative to the image root
    (``usr/bin/redis-server``). A file's bytes come from ``data`` or from
    ``source`` on disk; files sharing an ``inode`` key become hard links to
    the first of them in layer order. A whiteout deletes ``path`` from the
    layers below."""

    path: str
    kind: Kind
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    data: bytes | None = None
    source: Path | None = None
    target: str = ""  # symlink target
    inode: tuple[int, int] | None = None


@dataclass(frozen=True)
class Layer:
    path: Path
    digest: str  # "sha256:...", which is also the diff_id (uncompressed)
    size: int
    comment: str = ""


@dataclass(frozen=True)
class ImageConfig:
    """What a container runtime reads from the image config."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    env: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    workdir: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    architecture: str = "amd64"


@dataclass(frozen=True)
class ArchiveInfo:
    ref: str
    config_digest: str
    manifest_digest: str | None  # None for a docker-archive without an OCI index
    layer_digests: tuple[str, ...] = field(default=())


def sort_key(path: str) -> tuple[str, ...]:
    """Depth-first order: a directory before its contents, names bytewise."""
    return tuple(path.split("/"))


class _HashingWriter:
    """A write-only file that hashes what passes through."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self._hash.update(data)
        self._size += len(data)
        return len(data)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        self._out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    @property
    def size(self) -> int:
        return self._size


def _tarinfo(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode & 0o7777
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = EPOCH
    return info


def write_tar(entries: Iterable[Entry], out: IO[bytes]) -> tuple[str, int]:
    """Write ``entries`` as a deterministic tar to ``out``; return (digest, size)."""
    ordered = sorted(entries, key=lambda e: sort_key(e.path))
    seen: set[str] = set()
    first_of_inode: dict[tuple[int, int], str] = {}
    writer = _HashingWriter(out)
    with tarfile.open(fileobj=writer, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for e in ordered:
            path = e.path.strip("/")
            if not path or path in seen or path.startswith("../") or "/../" in f"/{path}/":
                raise ValueError(f"bad or duplicate layer path {e.path!r}")
            seen.add(path)
            if e.kind == "dir":
                tar.addfile(_tarinfo(path, tarfile.DIRTYPE, e.mode, e.uid, e.gid))
            elif e.kind == "symlink":
                info = _tarinfo(path, tarfile.SYMTYPE, 0o777, e.uid, e.gid)
                info.linkname = e.target
                tar.addfile(info)
            elif e.kind == "whiteout":
                parent, _, base = path.rpartition("/")
                name = f"{parent}/.wh.{base}" if parent else f".wh.{base}"
                tar.addfile(_tarinfo(name, tarfile.REGTYPE, 0o644))
            elif e.inode is not None and e.inode in first_of_inode:
                info = _tarinfo(path, tarfile.LNKTYPE, e.mode, e.uid, e.gid)
                info.linkname = first_of_inode[e.inode]
                tar.addfile(info)
            else:
                if e.inode is not None:
                    first_of_inode[e.inode] = path
                info = _tarinfo(path, tarfile.REGTYPE, e.mode, e.uid, e.gid)
                if e.data is not None:
                    info.size = len(e.data)
                    tar.addfile(info, io.BytesIO(e.data))
                elif e.source is not None:
                    with e.source.open("rb") as f:
                        info.size = e.source.stat().st_size
                        tar.addfile(info, f)
                else:
                    info.size = 0
                    tar.addfile(info)
    return writer.digest, writer.size


def write_layer(entries: Iterable[Entry], dest: Path, comment: str = "") -> Layer:
    """Write a layer tar to ``dest`` (a temporary name the caller renames)."""
    with dest.open("wb") as f:
        digest, size = write_tar(entries, f)
    return Layer(dest, digest, size, comment)


def layer_from_file(path: Path, comment: str = "") -> Layer:
    """A layer tar written earlier (for example the cached base layer)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return Layer(path, "sha256:" + h.hexdigest(), path.stat().st_size, comment)


def _json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def config_document(config: ImageConfig, layers: Sequence[Layer]) -> dict[str, Any]:
    runtime: dict[str, Any] = {}
    if config.entrypoint:
        runtime["Entrypoint"] = list(config.entrypoint)
    if config.cmd:
        runtime["Cmd"] = list(config.cmd)
    if config.user:
        runtime["User"] = config.user
    if config.env:
        runtime["Env"] = list(config.env)
    if config.ports:
        runtime["ExposedPorts"] = {p: {} for p in config.ports}
    if config.workdir:
        runtime["WorkingDir"] = config.workdir
    if config.labels:
        runtime["Labels"] = dict(config.labels)
    return {
        "architecture": config.architecture,
        "os": "linux",
        "created": CREATED,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        "history": [
            {"created": CREATED, "created_by": layer.comment or "kubeprem images build"}
            for layer in layers
        ],
    }


def _ref_tag(ref: str) -> str:
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def write_image_archive(
    dest: Path, ref: str, config: ImageConfig, layers: Sequence[Layer]
) -> ArchiveInfo:
    """Write one image archive holding ``layers`` (bottom first) to ``dest``."""
    config_bytes = _json(config_document(config, layers))
    config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [
            {"mediaType": MEDIA_LAYER, "digest": layer.digest, "size": layer.size}
            for layer in layers
        ],
    }
    manifest_bytes = _json(manifest)
    manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "annotations": {ANNOTATION_NAME: ref, ANNOTATION_REF: _ref_tag(ref)},
                "platform": {"architecture": config.architecture, "os": "linux"},
            }
        ],
    }
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{_hex(config_digest)}",
            "RepoTags": [ref],
            "Layers": [f"blobs/sha256/{_hex(layer.digest)}" for layer in layers],
        }
    ]
    entries: list[Entry] = [
        Entry("blobs", "dir", 0o755),
        Entry("blobs/sha256", "dir", 0o755),
        Entry("oci-layout", "file", data=_json({"imageLayoutVersion": "1.0.0"})),
        Entry("index.json", "file", data=_json(index)),
        Entry("manifest.json", "file", data=_json(docker_manifest)),
        Entry(f"blobs/sha256/{_hex(config_digest)}", "file", data=config_bytes),
        Entry(f"blobs/sha256/{_hex(manifest_digest)}", "file", data=manifest_bytes),
    ]
    for layer in {layer.digest: layer for layer in layers}.values():
        entries.append(Entry(f"blobs/sha256/{_hex(layer.digest)}", "file", source=layer.path))
    with dest.open("wb") as f:
        write_tar(entries, f)
    return ArchiveInfo(ref, config_digest, manifest_digest, tuple(la.digest for la in layers))


def read_archive(path: Path) -> ArchiveInfo:
    """Name and digests of an image archive (ours, an OCI layout or a
    docker-archive from ``docker save``), for archives an operator mirrored."""
    try:
        with tarfile.open(path, "r:*") as tar:
            names = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}

            def load(name: str) -> Any:
                f = tar.extractfile(names[name])
                assert f is not None
                return json.loads(f.read())

            if "index.json" in names:
                index = load("index.json")
                desc = index["manifests"][0]
                ann = desc.get("annotations") or {}
                ref = ann.get(ANNOTATION_NAME) or ann.get(ANNOTATION_REF) or ""
                digest = desc["digest"]
                manifest = load(f"blobs/sha256/{_hex(digest)}")
                if "config" not in manifest:
                    raise InputError(f"{path}: the index points to an index; name one image")
                layers = tuple(d["digest"] for d in manifest["layers"])
                return ArchiveInfo(ref, manifest["config"]["digest"], digest, layers)
            if "manifest.json" in names:
                docker = load("manifest.json")[0]
                config_name = docker["Config"]
                config_digest = "sha256:" + Path(config_name).name.removesuffix(".json")
                tags = docker.get("RepoTags") or [""]
                diff_ids = tuple(load(config_name)["rootfs"]["diff_ids"])
                return ArchiveInfo(tags[0], config_digest, None, diff_ids)
    except (OSError, tarfile.TarError, KeyError, IndexError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image archive: {exc}") from exc
    raise InputError(f"{path}: neither index.json nor manifest.json: not an image archive")


def copy_atomically(src: Path, dest: Path) -> None:
    """Copy ``src`` next to ``dest`` and rename it into place."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)

"""The SHA-256 manifest of a cached artifact set, and hashing helpers.

Used by ``kubeprem.artifacts.cache``. The manifest is JSON::

    {"format": 1, "kubernetes_version": "1.20.2", "source": "debian-source",
     "files": {"kube-apiserver": {"path": "bin/kube-apiserver", "sha256": "...",
                                 "size": 123, "source": "...", "version": "1.20.2",
                                 "destination": "/usr/local/bin/kube-apiserver"}, ...}}

``path`` is relative to the manifest's folder so a cache can be moved.
It is written atomically (temporary file, fsync, rename) and last, so its
presence marks a complete set.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubeprem.errors import OperationError

MANIFEST_NAME = "manifest.json"
FORMAT = 1
_CHUNK = 1 << 20


class ManifestError(OperationError):
    """A manifest is unreadable or does not match the files it describes."""


@dataclass(frozen=True)
class Entry:
    path: str
    sha256: str
    size: int
    source: str
    version: str
    destination: str


@dataclass(frozen=True)
class Manifest:
    kubernetes_version: str
    source: str
    files: dict[str, Entry]

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "kubernetes_version": self.kubernetes_version,
            "source": self.source,
            "files": {name: asdict(self.files[name]) for name in sorted(self.files)},
        }
        return json.dumps(doc, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> Manifest:
        try:
            doc = json.loads(text)
            if doc.get("format") != FORMAT:
                raise ManifestError(f"{where}: unknown manifest format {doc.get('format')!r}")
            files = {
                str(name): Entry(
                    path=str(e["path"]),
                    sha256=str(e["sha256"]),
                    size=int(e["size"]),
                    source=str(e["source"]),
                    version=str(e["version"]),
                    destination=str(e["destination"]),
                )
                for name, e in doc["files"].items()
            }
            return cls(str(doc["kubernetes_version"]), str(doc["source"]), files)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"{where}: not a valid manifest: {exc}") from exc


def read_manifest(path: Path) -> Manifest:
    return Manifest.from_json(path.read_text(encoding="utf-8"), str(path))


def write_manifest(path: Path, manifest: Manifest) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(manifest.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    tmp.rename(path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def parse_checksums(text: str, filename: str) -> str | None:
    """The SHA-256 for ``filename`` in a checksum file, or None.

    Accepts the forms upstream projects publish: a bare digest (Kubernetes'
    ``<binary>.sha256``) and ``sha256sum`` lines ``<digest>  <name>`` or
    ``<digest> *<name>``, where the name may carry a folder (``./x``)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1 and len(lines[0].split()) == 1:
        digest = lines[0].lower()
        return digest if _is_digest(digest) else None
    for ln in lines:
        parts = ln.split(None, 1)
        if len(parts) != 2:
            continue
        digest, name = parts[0].lower(), parts[1].strip().lstrip("*")
        if _is_digest(digest) and (name == filename or name.rsplit("/", 1)[-1] == filename):
            return digest
    return None


def _is_digest(s: str) -> bool:
    return len(s) == 64 and all(c in "0123456789abcdef" for c in s)

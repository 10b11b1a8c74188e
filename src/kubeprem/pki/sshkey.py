"""kubeprem's own SSH deployment key: ed25519, OpenSSH format, mode 0600.

Called by the lab (which authorises the key on its machines) and by anything
that needs the site's default key (``LoadedSite.ssh_key()``) when the site
file names none. The key is created once and then reused; it is written to
a temporary file in the same folder and renamed into place, so a killed run
never leaves half a key behind.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kubeprem.errors import OperationError


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def openssh_keypair(key: Ed25519PrivateKey, comment: str) -> tuple[bytes, bytes]:
    """(private key in OpenSSH format, ``ssh-ed25519 AAAA... comment`` line)."""
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public + (f" {comment}".encode() if comment else b"") + b"\n"


def ensure_ssh_key(path: Path, comment: str = "kubeprem") -> Path:
    """Create an ed25519 key at ``path`` (and ``path.pub``) unless one exists.

    Returns ``path``. An existing private key is kept; a missing ``.pub``
    beside it is derived from it.
    """
    pub_path = path.with_name(path.name + ".pub")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            if not pub_path.exists():
                loaded = serialization.load_ssh_private_key(path.read_bytes(), password=None)
                if not isinstance(loaded, Ed25519PrivateKey):
                    return path
                _, public = openssh_keypair(loaded, comment)
                _write_atomic(pub_path, public, 0o644)
            return path
        private, public = openssh_keypair(Ed25519PrivateKey.generate(), comment)
        _write_atomic(pub_path, public, 0o644)
        _write_atomic(path, private, 0o600)
    except (OSError, ValueError) as exc:
        raise OperationError(f"cannot create the SSH key {path}: {exc}") from exc
    return path


def public_key_line(path: Path) -> str:
    """The ``ssh-ed25519 AAAA... comment`` line of the key at ``path``."""
    pub_path = path.with_name(path.name + ".pub")
    try:
        if pub_path.exists():
            return pub_path.read_text(encoding="utf-8").strip()
        loaded = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise OperationError(f"cannot read the SSH key {path}: {exc}") from exc
    public = loaded.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode()

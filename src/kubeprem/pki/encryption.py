"""Encryption at rest: the API server's EncryptionConfiguration for Secrets.

The key list is data (``EncryptionConfig.keys``, newest first): the API
server encrypts with the first aescbc key and decrypts with any of them,
and ``identity`` last lets it still read Secrets written before encryption
was turned on. A later rotation adds a key in front, rewrites every
Secret, then drops the old key; ``with_new_key`` and ``without_key`` are
those steps. The stored YAML file is the only copy of the keys; it is
parsed back by ``parse_encryption_config``.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from io import StringIO
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from kubeprem.errors import OperationError
from kubeprem.pki.keys import KeySource
from kubeprem.sensitive import Sensitive

KEY_BYTES = 32  # AES-256
API_VERSION = "apiserver.config.k8s.io/v1"
_NAME = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class EncryptionKey:
    name: str
    secret: Sensitive[bytes]  # the raw 32 bytes, not base64


@dataclass(frozen=True)
class EncryptionConfig:
    keys: tuple[EncryptionKey, ...]  # newest (the one that encrypts) first

    def render(self) -> Sensitive[str]:
        """The EncryptionConfiguration YAML (holds the keys: Sensitive)."""
        lines = [
            f"apiVersion: {API_VERSION}",
            "kind: EncryptionConfiguration",
            "resources:",
            "  - resources:",
            "      - secrets",
            "    providers:",
        ]
        if self.keys:
            lines += ["      - aescbc:", "          keys:"]
            for key in self.keys:
                secret = base64.b64encode(key.secret.reveal()).decode("ascii")
                lines += [f"            - name: {key.name}", f"              secret: {secret}"]
        lines.append("      - identity: {}")
        return Sensitive("\n".join(lines) + "\n")

    def with_new_key(self, now: datetime, keys: KeySource) -> EncryptionConfig:
        """A fresh random key in front (it encrypts from now on); old keys still decrypt."""
        base = f"key-{now:%Y%m%d}"
        taken = {k.name for k in self.keys}
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        fresh = EncryptionKey(name, Sensitive(keys.random_bytes(KEY_BYTES)))
        return EncryptionConfig((fresh, *self.keys))

    def without_key(self, name: str) -> EncryptionConfig:
        return EncryptionConfig(tuple(k for k in self.keys if k.name != name))


def new_encryption_config(now: datetime, keys: KeySource) -> EncryptionConfig:
    return EncryptionConfig(()).with_new_key(now, keys)


def parse_encryption_config(text: Sensitive[str], where: str) -> EncryptionConfig:
    """Read back a file ``render`` wrote. Errors never quote the file's content."""

    def bad(why: str) -> OperationError:
        return OperationError(
            f"{where}: not a kubeprem encryption config ({why}); "
            "restore it from a backup: its keys decrypt the cluster's Secrets"
        )

    try:
        doc: Any = YAML(typ="safe").load(StringIO(text.reveal()))
    except YAMLError:
        raise bad("invalid YAML") from None
    try:
        if doc["apiVersion"] != API_VERSION or doc["kind"] != "EncryptionConfiguration":
            raise bad("wrong apiVersion or kind")
        providers = doc["resources"][0]["providers"]
        out: list[EncryptionKey] = []
        for provider in providers:
            for entry in (provider.get("aescbc") or {}).get("keys", []):
                name = str(entry["name"])
                if not _NAME.match(name):
                    raise bad("bad key name")
                secret = base64.b64decode(str(entry["secret"]), validate=True)
                if len(secret) != KEY_BYTES:
                    raise bad(f"key {name} is not {KEY_BYTES} bytes")
                out.append(EncryptionKey(name, Sensitive(secret)))
    except (KeyError, IndexError, TypeError, AttributeError, binascii.Error):
        raise bad("unexpected structure") from None
    return EncryptionConfig(tuple(out))


__all__ = [
    "KEY_BYTES",
    "EncryptionConfig",
    "EncryptionKey",
    "new_encryption_config",
    "parse_encryption_config",
]

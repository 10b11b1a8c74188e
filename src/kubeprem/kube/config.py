"""Read a kubeconfig into what the HTTP client needs: server, CA, client cert and key.

Called by ``kubeprem.kube.http.HttpKubeAPI.from_kubeconfig``. Only client
certificates are supported (kubeprem's own kubeconfigs use them); data may
be embedded (``*-data``, base64) or in files relative to the kubeconfig.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from kubeprem.errors import InputError
from kubeprem.sensitive import Sensitive


@dataclass(frozen=True)
class KubeConfig:
    server: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: Sensitive[bytes]
    source: str = "<kubeconfig>"


def _named(items: Any, name: str, what: str, source: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            inner = item.get(what)
            if isinstance(inner, dict):
                return inner
    raise InputError(f"{source}: no {what} named {name!r}")


def _data(entry: dict[str, Any], key: str, base: Path | None, source: str) -> bytes:
    if entry.get(f"{key}-data"):
        try:
            return base64.b64decode(str(entry[f"{key}-data"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"{source}: {key}-data is not base64") from exc
    if entry.get(key):
        p = Path(str(entry[key])).expanduser()
        if not p.is_absolute() and base is not None:
            p = base / p
        try:
            return p.read_bytes()
        except OSError as exc:
            raise InputError(f"{source}: cannot read {key} {p}: {exc.strerror}") from exc
    raise InputError(f"{source}: neither {key} nor {key}-data is set")


def parse_kubeconfig(text: Sensitive[str], source: str, base: Path | None = None) -> KubeConfig:
    """The current context's server and credentials. ``base``: folder for relative paths."""
    try:
        doc = YAML(typ="safe").load(text.reveal())
    except YAMLError as exc:
        # the message may quote the file, which holds a key: say only where
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"{source}{at}: not a valid kubeconfig (YAML)") from None
    if not isinstance(doc, dict):
        raise InputError(f"{source}: not a kubeconfig (expected a mapping)")
    ctx_name = doc.get("current-context")
    if not ctx_name:
        raise InputError(f"{source}: no current-context")
    ctx = _named(doc.get("contexts"), ctx_name, "context", source)
    cluster = _named(doc.get("clusters"), str(ctx.get("cluster")), "cluster", source)
    user = _named(doc.get("users"), str(ctx.get("user")), "user", source)
    server = str(cluster.get("server") or "")
    if not server.startswith("https://"):
        raise InputError(f"{source}: cluster server must be an https:// URL, got {server!r}")
    return KubeConfig(
        server=server.rstrip("/"),
        ca_pem=_data(cluster, "certificate-authority", base, source),
        cert_pem=_data(user, "client-certificate", base, source),
        key_pem=Sensitive(_data(user, "client-key", base, source)),
        source=source,
    )


def load_kubeconfig(path: Path) -> KubeConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the kubeconfig: {exc.strerror}") from exc
    return parse_kubeconfig(Sensitive(text), str(path), path.parent)


__all__ = ["KubeConfig", "load_kubeconfig", "parse_kubeconfig"]

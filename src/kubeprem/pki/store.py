"""The PKI state folder, ``.kubeprem/<cluster>/pki/``, and how it converges.

``converge`` is pure: from the site, the files already stored (path ->
bytes), ``now`` and a key source it computes the files the folder must
hold, a report (created / kept / reissued, with reasons) and the
``PkiBundle``. Stored material that still fits the site is reused byte for
byte; a leaf whose subject, SANs, usages or CA no longer fit is reissued
with a fresh key; a machine added to the site gets only its own
certificates. ``ensure_pki`` wraps it with the folder's I/O (0700 folders,
0600 secrets, atomic writes); ``issue_pki`` runs it in memory for tests and
golden files; ``load_pki`` reads a folder that must already be current.

Called by the ``pki`` command and, later, by render/apply workflows.
Expiry is not handled here: renewing certificates is ``certs renew``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from kubeprem.errors import OperationError
from kubeprem.pki.bundle import (
    ADMIN,
    CONTROLLER_MANAGER,
    KUBE_PROXY,
    SCHEDULER,
    CertKey,
    PkiBundle,
    kubelet_kubeconfig_name,
)
from kubeprem.pki.certs import (
    CAS,
    CLUSTER_CA,
    CASpec,
    CertSpec,
    SigningKey,
    issue_ca,
    issue_leaf,
    kubelet_client_id,
    mismatch,
    required_certs,
)
from kubeprem.pki.encryption import new_encryption_config, parse_encryption_config
from kubeprem.pki.keys import KeySource, SystemKeySource, cert_pem, key_pem, load_key, public_pem
from kubeprem.pki.kubeconfig import render_kubeconfig
from kubeprem.sensitive import Sensitive
from kubeprem.site.load import LoadedSite
from kubeprem.site.model import Site

Action = Literal["created", "kept", "reissued"]

SA_KEY = "sa.key"
SA_PUB = "sa.pub"
ENCRYPTION_CONFIG = "encryption-config.yaml"
KUBECONFIG_DIR = "kubeconfig"
_TMP_PREFIX = ".tmp-"
_SIGNING_TYPES = (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)


@dataclass(frozen=True)
class PkiChange:
    item: str  # a certificate id (apiserver, etcd/ca), sa, kubeconfig/<name>, encryption-config
    action: Action
    reason: str = ""


@dataclass(frozen=True)
class PkiReport:
    changes: tuple[PkiChange, ...]
    unused: tuple[str, ...] = ()  # stored certificates the site no longer needs (left alone)
    state_dir: Path | None = None

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def items(self, action: Action) -> list[str]:
        return [c.item for c in self.changes if c.action == action]

    @property
    def changed(self) -> bool:
        return any(c.action != "kept" for c in self.changes)


StoredContent = bytes | Sensitive[bytes]


@dataclass
class _Work:
    """What ``converge`` accumulates: desired files, report lines."""

    stored: Mapping[str, bytes]
    files: dict[str, StoredContent] = field(default_factory=dict)
    changes: list[PkiChange] = field(default_factory=list)

    def note(self, item: str, action: Action, reason: str = "") -> None:
        self.changes.append(PkiChange(item, action, reason))

    def secret(self, path: str) -> Sensitive[bytes] | None:
        data = self.stored.get(path)
        return None if data is None else Sensitive(data)


def _is_secret(path: str) -> bool:
    return path.endswith((".key", ".conf")) or path == ENCRYPTION_CONFIG


def _load_cert(data: bytes | None) -> x509.Certificate | None:
    if data is None:
        return None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        return None


def _load_key(data: Sensitive[bytes] | None) -> PrivateKeyTypes | None:
    if data is None:
        return None
    try:
        return load_key(data)
    except (ValueError, TypeError):
        return None


def _same_key(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    return key.public_key() == cert.public_key()


def _ca(w: _Work, spec: CASpec, now: datetime, keys: KeySource) -> tuple[CertKey, SigningKey]:
    crt_path, key_path = f"{spec.id}.crt", f"{spec.id}.key"
    crt_data = w.stored.get(crt_path)
    key_data = w.secret(key_path)
    cert = _load_cert(crt_data)
    key = _load_key(key_data)
    if crt_data is not None:
        if key_data is None:
            raise OperationError(
                f"{key_path} is missing but {crt_path} exists: restore the key from a "
                f"backup, or remove {crt_path} to start a new {spec.title} (every "
                "certificate it signed is then reissued)"
            )
        if cert is None or key is None or not _same_key(key, cert):
            raise OperationError(
                f"{crt_path} and {key_path} are unreadable or do not belong together: "
                "restore both from a backup"
            )
        if not isinstance(key, _SIGNING_TYPES):
            raise OperationError(f"{key_path}: this key type cannot sign certificates")
        w.files[crt_path] = crt_data
        w.files[key_path] = Sensitive(w.stored[key_path])
        w.note(spec.id, "kept")
        return CertKey(crt_data, Sensitive(w.stored[key_path])), key
    reason = ""
    if isinstance(key, _SIGNING_TYPES) and key_data is not None:
        signing_key: SigningKey = key
        reason = f"from the existing {key_path}"
    else:
        signing_key = keys.private_key()
    cert = issue_ca(spec, signing_key, keys.serial(), now)
    ck = CertKey(cert_pem(cert), key_pem(signing_key))
    w.files[crt_path] = ck.cert_pem
    w.files[key_path] = ck.key_pem
    w.note(spec.id, "created", reason)
    return ck, signing_key


def _leaf(
    w: _Work,
    spec: CertSpec,
    ca: CertKey,
    ca_key: SigningKey,
    now: datetime,
    keys: KeySource,
) -> CertKey:
    crt_path, key_path = f"{spec.id}.crt", f"{spec.id}.key"
    crt_data = w.stored.get(crt_path)
    key_data = w.secret(key_path)
    if crt_data is None and key_data is None:
        action: Action = "created"
        reason = ""
    else:
        action = "reissued"
        cert = _load_cert(crt_data)
        key = _load_key(key_data)
        if cert is None:
            reason = "certificate missing or unreadable"
        elif key is None:
            reason = "key missing or unreadable"
        elif not _same_key(key, cert):
            reason = "key does not match the certificate"
        else:
            why = mismatch(spec, cert, ca.cert)
            if why is None:
                assert crt_data is not None and key_data is not None
                w.files[crt_path] = crt_data
                w.files[key_path] = key_data
                w.note(spec.id, "kept")
                return CertKey(crt_data, key_data)
            reason = why
    leaf_key = keys.private_key()
    cert = issue_leaf(spec, leaf_key.public_key(), ca.cert, ca_key, keys.serial(), now)
    ck = CertKey(cert_pem(cert), key_pem(leaf_key))
    w.files[crt_path] = ck.cert_pem
    w.files[key_path] = ck.key_pem
    w.note(spec.id, action, reason)
    return ck


def _sa(w: _Work, keys: KeySource) -> tuple[Sensitive[bytes], bytes]:
    key_data = w.secret(SA_KEY)
    if key_data is None:
        key: PrivateKeyTypes = keys.private_key()
        pem = key_pem(key)
        w.note("sa", "created")
    else:
        loaded = _load_key(key_data)
        if loaded is None:
            # A new key would silently invalidate every service-account token.
            raise OperationError(f"{SA_KEY} is unreadable: restore it from a backup")
        key, pem = loaded, key_data
        w.note("sa", "kept")
    pub = public_pem(key)
    w.files[SA_KEY] = pem
    w.files[SA_PUB] = pub
    return pem, pub


def _kubeconfigs(
    w: _Work, site: Site, cas: Mapping[str, CertKey], certs: Mapping[str, CertKey]
) -> dict[str, Sensitive[str]]:
    local = f"https://127.0.0.1:{site.api.apiserver_port}"
    wanted: list[tuple[str, str, str]] = [  # name, certificate id, server
        (ADMIN, "admin", site.api_server_url),
        (CONTROLLER_MANAGER, "controller-manager", local),
        (SCHEDULER, "scheduler", local),
        (KUBE_PROXY, "kube-proxy", site.api_server_url),
    ]
    wanted += [
        (kubelet_kubeconfig_name(m), kubelet_client_id(m), site.api_server_url)
        for m in site.workers
    ]
    out: dict[str, Sensitive[str]] = {}
    ca_pem = cas[CLUSTER_CA].cert_pem
    for name, cert_id, server in wanted:
        ck = certs[cert_id]
        text = render_kubeconfig(
            cluster=site.cluster.name,
            server=server,
            ca_pem=ca_pem,
            user=_cn(ck.cert),
            cert_pem=ck.cert_pem,
            key_pem=ck.key_pem,
        )
        path = f"{KUBECONFIG_DIR}/{name}.conf"
        data = text.reveal().encode()
        old = w.stored.get(path)
        if old is None:
            w.note(path, "created")
        elif old == data:
            w.note(path, "kept")
        else:
            w.note(path, "reissued", "certificate or server changed")
        w.files[path] = Sensitive(data)
        out[name] = text
    return out


def _cn(cert: x509.Certificate) -> str:
    value = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    return value if isinstance(value, str) else value.decode()


def converge(
    site: Site, stored: Mapping[str, bytes], now: datetime, keys: KeySource
) -> tuple[dict[str, StoredContent], PkiReport, PkiBundle]:
    """The files the PKI folder must hold, what changed, and the bundle. Pure.

    ``stored`` maps paths relative to the folder (``ca.crt``,
    ``etcd/controller-0/server.key``) to their bytes; so does the result,
    with secrets as ``Sensitive``. ``now`` must be timezone-aware.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    w = _Work(stored)
    cas: dict[str, CertKey] = {}
    ca_keys: dict[str, SigningKey] = {}
    for ca_spec in CAS:
        cas[ca_spec.id], ca_keys[ca_spec.id] = _ca(w, ca_spec, now, keys)
    sa_key, sa_pub = _sa(w, keys)
    specs = required_certs(site)
    certs = {spec.id: _leaf(w, spec, cas[spec.ca], ca_keys[spec.ca], now, keys) for spec in specs}
    kubeconfigs = _kubeconfigs(w, site, cas, certs)
    encryption = None
    if site.encryption.at_rest:
        old = w.secret(ENCRYPTION_CONFIG)
        if old is not None:
            encryption = parse_encryption_config(
                Sensitive(old.reveal().decode("utf-8", "replace")), ENCRYPTION_CONFIG
            )
            w.files[ENCRYPTION_CONFIG] = old  # as stored, byte for byte
            w.note("encryption-config", "kept")
        else:
            encryption = new_encryption_config(now, keys)
            w.files[ENCRYPTION_CONFIG] = Sensitive(encryption.render().reveal().encode())
            w.note("encryption-config", "created")
    needed = {f"{c.id}.crt" for c in CAS} | {f"{s.id}.crt" for s in specs}
    unused = tuple(
        sorted(p.removesuffix(".crt") for p in stored if p.endswith(".crt") and p not in needed)
    )
    bundle = PkiBundle(
        cas=cas,
        certs=certs,
        sa_key=sa_key,
        sa_pub=sa_pub,
        kubeconfigs=kubeconfigs,
        encryption=encryption,
    )
    return w.files, PkiReport(tuple(w.changes), unused), bundle


def issue_pki(site: Site, now: datetime, keys: KeySource) -> PkiBundle:
    """A whole new PKI in memory (nothing written): for tests and golden
    files, with a ``SeededKeySource`` for reproducible bytes."""
    return converge(site, {}, now, keys)[2]


# -- the folder ------------------------------------------------------------


def pki_dir(loaded: LoadedSite) -> Path:
    return loaded.state_dir / "pki"


def read_store(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path (temp files skipped)."""
    out: dict[str, bytes] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith(_TMP_PREFIX):
            out[path.relative_to(folder).as_posix()] = path.read_bytes()
    return out


def _private_dir(path: Path, top: Path) -> None:
    """Create ``path`` and its parents up to ``top`` as 0700 folders."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    p = path
    while True:
        os.chmod(p, 0o700)
        if p == top or top not in p.parents:
            break
        p = p.parent


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a temp file in the same folder, fsync, rename, fsync the
    folder: a crash leaves the old file or the new one, never a torn one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX)  # created 0600
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_store(
    folder: Path, files: Mapping[str, StoredContent], stored: Mapping[str, bytes]
) -> None:
    _private_dir(folder, folder)
    for rel, content in files.items():
        data = content.reveal() if isinstance(content, Sensitive) else content
        mode = 0o600 if _is_secret(rel) else 0o644
        path = folder / rel
        _private_dir(path.parent, folder)
        if stored.get(rel) == data:
            if path.stat().st_mode & 0o777 != mode:
                os.chmod(path, mode)
            continue
        write_atomic(path, data, mode)


def ensure_pki(
    loaded: LoadedSite, now: datetime, keys: KeySource | None = None
) -> tuple[PkiReport, PkiBundle]:
    """Create or reuse the PKI in ``.kubeprem/<cluster>/pki/`` and return what
    happened and the bundle. Re-running with an unchanged site rewrites
    nothing."""
    folder = pki_dir(loaded)
    if not folder.parent.exists():
        folder.parent.mkdir(mode=0o700, parents=True)
    try:
        stored = read_store(folder)
        files, report, bundle = converge(loaded.site, stored, now, keys or SystemKeySource())
        _write_store(folder, files, stored)
    except OSError as exc:
        raise OperationError(f"{folder}: {exc.strerror or exc}") from exc
    except OperationError as exc:
        raise OperationError(f"{folder}: {exc}") from exc
    return PkiReport(report.changes, report.unused, folder), bundle


def load_pki(loaded: LoadedSite, now: datetime) -> PkiBundle:
    """The bundle from a folder that ``kubeprem pki`` has made current for
    this site; writes nothing and fails when anything would change."""
    folder = pki_dir(loaded)
    try:
        stored = read_store(folder)
    except OSError as exc:
        raise OperationError(f"{folder}: {exc.strerror or exc}") from exc
    if not stored:
        raise OperationError(f"{folder}: no PKI yet; run `kubeprem pki {loaded.path}` first")
    try:
        _, report, bundle = converge(loaded.site, stored, now, SystemKeySource())
    except OperationError as exc:
        raise OperationError(f"{folder}: {exc}") from exc
    if report.changed:
        stale = ", ".join(c.item for c in report.changes if c.action != "kept")
        raise OperationError(
            f"{folder}: the PKI does not match the site ({stale}); "
            f"run `kubeprem pki {loaded.path}` to update it"
        )
    return bundle

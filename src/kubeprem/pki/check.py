"""What ``kubeprem pki check`` reports: every stored certificate's subject,
SANs and expiry. Reads the state folder only; ``now`` is passed in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from kubeprem.errors import OperationError
from kubeprem.pki.certs import CAS, cert_sans, required_certs
from kubeprem.pki.store import pki_dir, read_store
from kubeprem.site.load import LoadedSite

WARN_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class CertStatus:
    id: str  # path stem in the state folder: ca, apiserver, etcd/controller-0/server
    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_after: datetime
    days_left: int
    needed: bool  # False: the site no longer uses it (e.g. a removed machine)

    @property
    def expired(self) -> bool:
        return self.days_left < 0

    @property
    def expiring(self) -> bool:
        return not self.expired and self.days_left < WARN_BEFORE.days


def cert_status(cert_id: str, cert: x509.Certificate, now: datetime, needed: bool) -> CertStatus:
    dns, ips = cert_sans(cert)
    not_after = cert.not_valid_after_utc
    left = not_after - now
    # Whole days, rounding down, so "0" means less than a day and -1 expired.
    days = left.days if left >= timedelta(0) else -1 - (-left).days
    return CertStatus(
        id=cert_id,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=(*dns, *map(str, ips)),
        not_after=not_after,
        days_left=days,
        needed=needed,
    )


def check_pki(loaded: LoadedSite, now: datetime) -> list[CertStatus]:
    """Every certificate in the site's PKI folder, CAs first."""
    folder = pki_dir(loaded)
    try:
        stored = read_store(folder)
    except OSError as exc:
        raise OperationError(f"{folder}: {exc.strerror or exc}") from exc
    if not stored:
        raise OperationError(f"{folder}: no PKI yet; run `kubeprem pki {loaded.path}` first")
    ca_ids = [c.id for c in CAS]
    needed = set(ca_ids) | {s.id for s in required_certs(loaded.site)}
    ids = sorted(
        (p.removesuffix(".crt") for p in stored if p.endswith(".crt")),
        key=lambda i: (i not in ca_ids, i),
    )
    out = []
    for cert_id in ids:
        try:
            cert = x509.load_pem_x509_certificate(stored[f"{cert_id}.crt"])
        except ValueError:
            raise OperationError(f"{folder / cert_id}.crt: not a PEM certificate") from None
        out.append(cert_status(cert_id, cert, now, cert_id in needed))
    return out


__all__ = ["WARN_BEFORE", "CertStatus", "cert_status", "check_pki"]

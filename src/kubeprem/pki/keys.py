"""Where keys, serial numbers and random secrets come from.

Issuance takes one ``KeySource`` so that tests and golden files can inject
a deterministic one (``SeededKeySource``) while real runs use the
operating system's randomness (``SystemKeySource``). Also the PEM
encodings every other PKI module shares.

Key type: ECDSA P-256. Generating one takes microseconds where a 2048-bit
RSA key takes tens of milliseconds (a cluster needs dozens, and tests
issue many clusters), its signatures are small, and every consumer accepts
it: Kubernetes components since well before 1.20 (Go's crypto/tls and
kubeadm's own ``ECDSA`` option), etcd 3.4, HAProxy, kubectl and OpenSSL.
The service-account keys are ECDSA too: kube-apiserver signs tokens as
ES256.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from kubeprem.sensitive import Sensitive

CURVE = ec.SECP256R1()
# RFC 5280 serials are at most 20 octets and must be positive.
_SERIAL_BITS = 159


class KeySource(Protocol):
    """One source of everything random that issuance needs."""

    def private_key(self) -> ec.EllipticCurvePrivateKey: ...

    def serial(self) -> int: ...

    def random_bytes(self, n: int) -> bytes: ...


class SystemKeySource:
    """The operating system's randomness: what real clusters use."""

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(CURVE)

    def serial(self) -> int:
        return x509.random_serial_number()

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)


class SeededKeySource:
    """Deterministic keys and secrets from a seed: for tests and golden files
    only. Anyone who knows the seed knows every key; never use it for a
    real cluster."""

    def __init__(self, seed: str = "kubeprem-test") -> None:
        self._seed = seed.encode()
        self._counter = 0

    def _next(self, label: bytes) -> bytes:
        self._counter += 1
        return hashlib.sha512(
            self._seed + b"\0" + label + b"\0" + str(self._counter).encode()
        ).digest()

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        # P-256's order is just below 2**256; 512 bits reduced modulo it stay uniform.
        order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        scalar = int.from_bytes(self._next(b"key"), "big") % (order - 1) + 1
        return ec.derive_private_key(scalar, CURVE)

    def serial(self) -> int:
        value = int.from_bytes(self._next(b"serial"), "big") >> (512 - _SERIAL_BITS)
        return value or 1

    def random_bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += self._next(b"bytes")
        return out[:n]


def key_pem(key: PrivateKeyTypes) -> Sensitive[bytes]:
    """A private key as PEM, unencrypted: the state folder's 0700 mode and
    the hosts' 0600 files protect it, as kubeadm's layout does. ECDSA keys
    use the SEC1 ``EC PRIVATE KEY`` form that kubeadm writes."""
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if isinstance(key, ec.EllipticCurvePrivateKey)
        else serialization.PrivateFormat.PKCS8
    )
    return Sensitive(
        key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    )


def public_pem(key: PrivateKeyTypes) -> bytes:
    """The public half as a PEM SubjectPublicKeyInfo (what ``sa.pub`` holds)."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_key(pem: Sensitive[bytes]) -> PrivateKeyTypes:
    """Parse a PEM private key; ``ValueError`` when it is not one."""
    return serialization.load_pem_private_key(pem.reveal(), password=None)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


__all__ = [
    "CURVE",
    "KeySource",
    "SeededKeySource",
    "SystemKeySource",
    "cert_pem",
    "key_pem",
    "load_key",
    "public_pem",
]

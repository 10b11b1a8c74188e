"""The cluster PKI: CAs, leaf certificates, kubeconfigs, encryption config.

``ensure_pki`` creates or reuses ``.kubeprem/<cluster>/pki/`` and returns a
report and a ``PkiBundle``; renderers take the bundle. Issuance is pure:
``now`` and a ``KeySource`` are passed in.
"""

from kubeprem.pki.bundle import CertKey, PkiBundle
from kubeprem.pki.keys import KeySource, SeededKeySource, SystemKeySource
from kubeprem.pki.store import PkiChange, PkiReport, ensure_pki, issue_pki, load_pki

__all__ = [
    "CertKey",
    "KeySource",
    "PkiBundle",
    "PkiChange",
    "PkiReport",
    "SeededKeySource",
    "SystemKeySource",
    "ensure_pki",
    "issue_pki",
    "load_pki",
]

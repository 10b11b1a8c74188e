"""The passwords of a BigBlueButton deployment: one stored master key, the rest derived.

Called by ``build`` and through the catalogue's ``passwords``. The catalogue
hands ``passwords(existing, gen)`` no values file, yet the servers' passwords
depend on which servers there are; so one master key is generated once
(kept in the Secret ``bigbluebutton-auth``) and every other password is
HMAC-SHA256(master, "<owner>.<purpose>"), written in letters and digits.
The same master always gives the same passwords, so a re-deploy or a new
server changes nothing that exists; knowing one derived password reveals
neither the master nor another password (HMAC is a pseudo-random function).

``KNOWN_DEFAULTS`` are the passwords of BigBlueButton's examples and
packaging (docs/BBB.md); ``refuse_defaults`` raises if one of them were
ever about to be deployed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from kubeprem.apps.base import ALPHABET, PasswordSource
from kubeprem.errors import InputError
from kubeprem.sensitive import Sensitive

MASTER = "master-key"
SECRET = "bigbluebutton-auth"

# per server: key in the server's Secret -> length
SERVER_KEYS: dict[str, int] = {
    "api-secret": 40,  # BigBlueButton's shared secret (bbb-web, Scalelite's server list)
    "esl-password": 32,  # FreeSWITCH event socket
    "hasura-admin-secret": 40,
    "redis-password": 32,
    "postgresql-superuser": 32,
    "postgresql-replication": 32,
    "db-password": 32,  # role bbb: owner of hasura_app and bbb_graphql
    "etherpad-api-key": 40,
    "turn-secret": 40,  # coturn static-auth-secret, shared with bbb-web
}
SCALELITE_KEYS: dict[str, int] = {
    "loadbalancer-secret": 40,
    "secret-key-base": 128,
    "redis-password": 32,
    "postgresql-superuser": 32,
    "postgresql-replication": 32,
}

KNOWN_DEFAULTS: tuple[str, ...] = (
    "ClueCon",  # FreeSWITCH event socket
    "TODO_CHANGE_ME",  # Hasura admin secret of the packaging
    "password",  # PostgreSQL of the packaging and the compose project
    "8cd8ef52e8e101574e400365b55e11a6",  # the API documentation's example shared secret
    "SuperSecret",
    "changeme",
)


def passwords(
    existing: dict[str, Sensitive[str]], gen: PasswordSource
) -> dict[str, Sensitive[str]]:
    """Keep the stored master key; make one only when there is none."""
    return {MASTER: existing.get(MASTER) or gen.password(64)}


def derive(master: Sensitive[str], label: str, length: int) -> Sensitive[str]:
    out = ""
    block = 0
    while len(out) < length:
        mac = hmac.new(
            master.reveal().encode(), f"{label}#{block}".encode(), hashlib.sha256
        ).digest()
        n = int.from_bytes(mac, "big")
        while n and len(out) < length:
            n, r = divmod(n, len(ALPHABET))
            out += ALPHABET[r]
        block += 1
    return Sensitive(out)


def server_passwords(master: Sensitive[str], server: str) -> dict[str, Sensitive[str]]:
    return {k: derive(master, f"server/{server}.{k}", n) for k, n in SERVER_KEYS.items()}


def scalelite_passwords(master: Sensitive[str]) -> dict[str, Sensitive[str]]:
    return {k: derive(master, f"scalelite.{k}", n) for k, n in SCALELITE_KEYS.items()}


def refuse_defaults(values: Iterable[Sensitive[str]]) -> None:
    known = {d.lower() for d in KNOWN_DEFAULTS}
    for v in values:
        if v.reveal().lower() in known:
            raise InputError(
                "a BigBlueButton password equals a published default; "
                "delete the Secret bigbluebutton-auth's master-key to make a new one"
            )


__all__ = [
    "KNOWN_DEFAULTS",
    "MASTER",
    "SCALELITE_KEYS",
    "SECRET",
    "SERVER_KEYS",
    "derive",
    "passwords",
    "refuse_defaults",
    "scalelite_passwords",
    "server_passwords",
]

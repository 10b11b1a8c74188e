"""`kubeprem encryption rotate`: a new AES key for Secrets, without downtime.

Called by the rotate command. Every step is rolled to the API servers one
at a time (``certs.roll``: /readyz on each and through the VIP between
them), so at no moment does one API server write with a key another cannot
read:

1. the new key is added *second*: every API server can decrypt with it,
   none encrypts with it yet;
2. the new key moves *first*: new writes use it, the old key still decrypts;
3. every Secret is rewritten (``kubectl get secrets -A -o json`` then
   ``kubectl replace -f -``), so etcd holds each under the new key;
4. the raw values in etcd are checked: every Secret starts with
   ``k8s:enc:aescbc:v1:<new key>:`` (refuses to go on otherwise);
5. the old keys are removed.

The state folder's encryption-config.yaml is the only copy of the keys: it is
written before each roll, so an interrupted rotation resumes from the file.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from kubeprem.errors import OperationError
from kubeprem.pki.encryption import EncryptionConfig, parse_encryption_config
from kubeprem.pki.keys import KeySource, SystemKeySource
from kubeprem.pki.store import ENCRYPTION_CONFIG, ensure_pki, pki_dir, write_atomic
from kubeprem.sensitive import Sensitive
from kubeprem.site.load import LoadedSite
from kubeprem.transport.base import Transport
from kubeprem.workflows import gates
from kubeprem.workflows.apply import make_plan
from kubeprem.workflows.certs import roll

PREFIX = "k8s:enc:aescbc:v1:"

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class RotateReport:
    new_key: str
    removed: tuple[str, ...]
    secrets_rewritten: int
    by_key: dict[str, int]  # raw etcd values per key name after the rewrite


def steps(current: EncryptionConfig, now: datetime, keys: KeySource) -> list[EncryptionConfig]:
    """The three configurations rolled out in order (pure)."""
    if not current.keys:
        raise OperationError("encryption config has no aescbc key: nothing to rotate")
    fresh = current.with_new_key(now, keys).keys[0]
    return [
        EncryptionConfig((*current.keys, fresh)),
        EncryptionConfig((fresh, *current.keys)),
        EncryptionConfig((fresh,)),
    ]


def key_of(raw: bytes) -> str:
    """The key name a raw etcd value was encrypted with ("identity" if none)."""
    if not raw.startswith(PREFIX.encode()):
        return "identity"
    rest = raw[len(PREFIX) :]
    return rest.split(b":", 1)[0].decode("ascii", "replace")


def keys_in_etcd(output: str) -> Counter[str]:
    """Secrets per key name, from ``etcdctl get /registry/secrets/ --prefix -w json``."""
    doc = json.loads(output) if output.strip() else {}
    return Counter(key_of(base64.b64decode(kv["value"])) for kv in doc.get("kvs", []) or [])


async def raw_keys(t: Transport) -> Counter[str]:
    r = await t.run(
        gates.etcdctl("get", "/registry/secrets/", "--prefix", "-w", "json"),
        step="read raw Secrets from etcd",
        timeout=60,
    )
    return keys_in_etcd(r.stdout)


async def rewrite_secrets(t: Transport) -> int:
    """Read every Secret and replace it unchanged: the API server re-encrypts it."""
    for attempt in range(3):
        r = await t.run(gates.kubectl("get", "secrets", "-A", "-o", "json"), step="list Secrets")
        count = len(json.loads(r.stdout).get("items", []))
        if count == 0:
            return 0
        w = await t.run(
            gates.kubectl("replace", "-f", "-"),
            step="rewrite Secrets",
            stdin=r.stdout.encode(),
            check=False,
            timeout=120,
        )
        if w.ok:
            return count
        if "conflict" not in w.stderr.lower() or attempt == 2:
            raise OperationError(
                f"{t.host}: kubectl replace of Secrets failed: {w.stderr.strip()[-300:]}"
            )
    return 0  # pragma: no cover


async def rotate(
    loaded: LoadedSite,
    transports: Mapping[str, Transport],
    now: datetime,
    *,
    say: Say = _quiet,
    keys: KeySource | None = None,
) -> RotateReport:
    site = loaded.site
    if not site.encryption.at_rest:
        raise OperationError("encryption.at_rest is off in the site file: nothing to rotate")
    path = pki_dir(loaded) / ENCRYPTION_CONFIG
    try:
        current = parse_encryption_config(Sensitive(path.read_text()), str(path))
    except OSError as exc:
        raise OperationError(f"{path}: {exc.strerror or exc}") from exc
    add, promote, final = steps(current, now, keys or SystemKeySource())
    new = promote.keys[0].name
    old = tuple(k.name for k in current.keys)
    controllers = [m.name for m in site.controllers]
    first = transports[controllers[0]]

    async def roll_out(cfg: EncryptionConfig, what: str) -> None:
        say(what)
        write_atomic(path, cfg.render().reveal().encode(), 0o600)
        _, bundle = ensure_pki(loaded, now)
        cplan = await make_plan(loaded, bundle, None, transports)
        await roll(site, cplan.hosts, transports, only=controllers, say=say)

    await roll_out(add, f"add key {new} (decrypts only) on every API server")
    await roll_out(promote, f"encrypt with {new}")
    say("rewrite every Secret")
    count = await rewrite_secrets(first)
    by_key = await raw_keys(first)
    stale = {k: n for k, n in by_key.items() if k != new}
    if stale:
        raise OperationError(
            f"after the rewrite, etcd still holds Secrets under {stale}; the old keys are "
            "kept (rerun `kubeprem encryption rotate` once the API servers are healthy)"
        )
    await roll_out(final, f"remove the old keys {', '.join(old)}")
    return RotateReport(new, old, count, dict(by_key))

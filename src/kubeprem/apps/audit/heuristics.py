"""The judgement calls of the audit, kept in one place with their reasons.

Pure functions and tables used by the rules: does a key name a secret, does a
value look like a random key, is a host path a node agent's system path, is a
port one that only other pods should reach.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections import Counter

# Words that make a name secret wherever they appear (unless the name ends in a
# word saying it is about the secret, not the secret: SECRET_NAME, TOKEN_URL).
STRONG_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "credential",
        "credentials",
        "privatekey",
        "pwd",
        "requirepass",
        "masterauth",
    }
)
# Words that name a secret only as the last word: API_KEY, DB_PASS; not KEY_ID.
WEAK_LAST_WORDS = frozenset({"key", "pass"})
# "key" after these is a data-model key, not a credential: primary_key, sort_key.
NOT_CREDENTIAL_KEYS = frozenset(
    {
        "public",
        "primary",
        "foreign",
        "partition",
        "sort",
        "routing",
        "shard",
        "sharding",
        "cache",
        "hash",
        "lookup",
        "unique",
        "composite",
        "row",
        "idempotency",
        "dedup",
        "object",
        "map",
        "label",
        "annotation",
        "config",
        "registry",
        "license",
    }
)
# A name ending in one of these describes a secret without holding one.
DESCRIBING_LAST_WORDS = frozenset(
    {
        "file",
        "path",
        "name",
        "ref",
        "url",
        "uri",
        "id",
        "length",
        "len",
        "min",
        "max",
        "ttl",
        "expiry",
        "expires",
        "expiration",
        "timeout",
        "type",
        "policy",
        "enabled",
        "enable",
        "disabled",
        "required",
        "mode",
        "header",
        "field",
        "prefix",
        "suffix",
        "format",
        "hint",
        "dir",
        "location",
        "endpoint",
        "host",
        "port",
        "user",
        "username",
        "count",
        "size",
        "seconds",
        "minutes",
        "hours",
        "days",
        "version",
        "algorithm",
        "method",
        "strategy",
        "provider",
        "rotation",
        "secretname",
        "store",
        "mount",
    }
)
# Trailing words that change nothing: DB_PASSWORD_B64 is still a password.
TRANSPARENT_LAST_WORDS = frozenset({"b64", "base64", "value", "raw"})
# Values that switch something on or off, or stand for a value given elsewhere.
NON_SECRET_VALUES = frozenset({"true", "false", "yes", "no", "on", "off", "null", "none", "~"})
_PLACEHOLDER = re.compile(r"^(\$\{.*\}|\$\(.*\)|\{\{.*\}\}|<.*>|%\(.*\)s)$")
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def name_words(name: str) -> list[str]:
    """``redisPassword`` -> [redis, password]; ``DB_PASS`` -> [db, pass]."""
    return [w.lower() for w in _WORD_SPLIT.split(name) if w]


def is_secret_name(name: str) -> bool:
    """Whether a key or variable name says it holds a secret.

    ``keyspace``, ``primary_key_column``, ``token_ttl``, ``password_file``
    and ``SECRET_NAME`` do not; ``FSESL_PASSWORD``, ``apiKey``, ``ssh-key``,
    ``AWS_SECRET_ACCESS_KEY`` and ``SECRET_KEY_BASE`` do.
    """
    words = name_words(name)
    while len(words) > 1 and (words[-1] in TRANSPARENT_LAST_WORDS or words[-1].isdigit()):
        words.pop()
    if not words or words[-1] in DESCRIBING_LAST_WORDS:
        return False
    if any(w in STRONG_WORDS for w in words):
        return True
    if words[-1] in WEAK_LAST_WORDS:
        return not (len(words) > 1 and words[-2] in NOT_CREDENTIAL_KEYS)
    return False


def is_literal_secret_value(value: object) -> bool:
    """Whether a value under a secret-looking name is a literal secret: not
    empty, not a switch, not a placeholder for a value given elsewhere, not a path."""
    if value is None or isinstance(value, bool):
        return False
    text = str(value).strip()
    if not text or text.lower() in NON_SECRET_VALUES:
        return False
    return not (_PLACEHOLDER.match(text) or text.startswith(("/", "./", "file:")))


PEM_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
# Inside a multi-line value (redis.conf, application.properties): "key = value",
# "key: value" or "requirepass value".
CONFIG_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.\-]*)\s*(?:[:=]\s*|\s+)(\S.*?)\s*$")


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``'s own character distribution."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values()) if n else 0.0


# The entropy threshold. A string of n characters can show at most log2(n)
# bits per character of empirical entropy, so the threshold is relative to that
# ceiling (capped at 48 characters): random base64 of 20 characters or more
# reaches 0.85 of it in 92-98 of 100 samples, while words, hostnames, image
# references, Java class names and log-level strings stay below it (they repeat
# letters). Values must also be one token of 20+ characters with 3 of the 4
# character classes: hex digests and UUIDs (2 classes, usually not secret) and
# prose (spaces) never fire.
ENTROPY_MIN_LENGTH = 20
ENTROPY_RATIO = 0.85


def looks_random(value: str) -> bool:
    """Whether a value looks like a generated key or token (see the threshold above)."""
    text = value.strip()
    if len(text) < ENTROPY_MIN_LENGTH or any(ch.isspace() for ch in text):
        return False
    if "://" in text or text.startswith(("/", "./")) or _PLACEHOLDER.match(text):
        return False
    classes = sum(
        (
            any(ch.islower() for ch in text),
            any(ch.isupper() for ch in text),
            any(ch.isdigit() for ch in text),
            any(not ch.isalnum() for ch in text),
        )
    )
    if classes < 3:
        return False
    ceiling = math.log2(min(len(text), 48))
    return shannon_entropy(text) >= ENTROPY_RATIO * ceiling


# Host paths that node agents (log shippers, CNI plugins, kube-proxy, CSI
# drivers, monitoring exporters) legitimately mount; anything else on the
# node's disk is application state or a hole in isolation.
NODE_AGENT_PATHS = (
    "/var/log",
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/run/containerd",
    "/var/run/containerd",
    "/proc",
    "/sys",
    "/etc/cni",
    "/opt/cni/bin",
    "/var/lib/cni",
    "/run/xtables.lock",
    "/lib/modules",
)


def is_node_agent_path(path: str) -> bool:
    norm = posixpath.normpath(path) if path else ""
    return any(norm == p or norm.startswith(p + "/") for p in NODE_AGENT_PATHS)


# Ports of protocols that only other pods should speak: databases, brokers,
# control channels. A NodePort opens them on every node's address.
INTERNAL_PORTS = {
    2181: "ZooKeeper",
    2379: "etcd clients",
    2380: "etcd peers",
    3306: "MySQL/MariaDB",
    5432: "PostgreSQL",
    5672: "AMQP",
    6379: "Redis",
    8021: "FreeSWITCH event socket",
    9042: "Cassandra",
    9092: "Kafka",
    11211: "memcached",
    26379: "Redis Sentinel",
    27017: "MongoDB",
}

# Capabilities the restricted Pod Security profile allows adding.
HARMLESS_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})


def image_tag(image: str) -> tuple[str | None, bool]:
    """(tag, pinned by digest) of an image reference; tag None when absent."""
    ref, _, digest = image.partition("@")
    last = ref.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    return tag, bool(digest)

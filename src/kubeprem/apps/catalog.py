"""The apps kubeprem deploys, by name: values model, builder, and its Secret.

Called by the ``app`` commands and by ``kubeprem.apps.workflow``. Adding an
app means adding one ``AppDef`` here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubeprem.apps import bigbluebutton, postgresql, redis
from kubeprem.apps.base import PasswordSource, Rendered
from kubeprem.apps.values import Values
from kubeprem.errors import InputError
from kubeprem.sensitive import Sensitive

Passwords = dict[str, Sensitive[str]]


@dataclass(frozen=True)
class AppDef:
    name: str
    values: type[Values]
    build: Callable[[Any, dict[str, str], Passwords], Rendered]
    passwords: Callable[[Passwords, PasswordSource], Passwords]
    secret: str  # the Secret holding the app's passwords
    summary: str
    # extra lines for `kubeprem app status` (e.g. the firewall ports to open)
    status_notes: Callable[[Any], list[str]] | None = None


APPS: Mapping[str, AppDef] = {
    "redis": AppDef(
        "redis",
        redis.RedisValues,
        redis.build,
        redis.passwords,
        redis.SECRET,
        "primary + 2 replicas, 3 Sentinels, one primary address (or sharded Redis Cluster)",
    ),
    "postgresql": AppDef(
        "postgresql",
        postgresql.PostgresValues,
        postgresql.build,
        postgresql.passwords,
        postgresql.SECRET,
        "primary + 2 streaming replicas with Patroni (Kubernetes API as its store)",
    ),
    "bigbluebutton": AppDef(
        "bigbluebutton",
        bigbluebutton.BBBValues,
        bigbluebutton.build,
        bigbluebutton.passwords,
        bigbluebutton.SECRET,
        "BigBlueButton 3.0 servers (one node each, own Redis and PostgreSQL) behind Scalelite",
        bigbluebutton.status_lines,
    ),
}


def app_def(name: str) -> AppDef:
    try:
        return APPS[name]
    except KeyError:
        raise InputError(f"unknown app {name!r}; kubeprem knows: {', '.join(APPS)}") from None


__all__ = ["APPS", "AppDef", "app_def"]

"""BigBlueButton 3.0 on Kubernetes: servers as units, Scalelite in front, a drain-safe scaler.

Pure builder called by the ``app`` commands through ``kubeprem.apps.catalog``
(``build``, ``passwords``, ``SECRET``), plus the scaler's parts.

    values     the values file (servers, public addresses, images, sizes)
    server     one server: namespace bbb-<name>, app pod + host-network media
               pod pinned to one node, its Redis and PostgreSQL, policies
    scalelite  Scalelite, its Redis and PostgreSQL, the server list
    secrets    one stored master key, every other password derived from it
    ports      listeners, host-network reasons, firewall lines
    api        BigBlueButton's API: checksums, getMeetings -> load
    scaler     pure decision (loads -> actions) and the I/O around it

docs/bigbluebutton.md describes the design and what was run.
"""

from __future__ import annotations

from kubeprem.apps import base as b
from kubeprem.apps.bigbluebutton import scalelite, secrets, server
from kubeprem.apps.bigbluebutton.ports import firewall_lines
from kubeprem.apps.bigbluebutton.values import BBBValues
from kubeprem.sensitive import Sensitive

APP = server.APP
SECRET = secrets.SECRET
passwords = secrets.passwords


def build(v: BBBValues, images: dict[str, str], pw: dict[str, Sensitive[str]]) -> b.Rendered:
    master = pw[secrets.MASTER]
    ns = v.namespace
    per_server = {s.name: secrets.server_passwords(master, s.name) for s in v.servers}
    sl_pw = secrets.scalelite_passwords(master)
    secrets.refuse_defaults(
        [*sl_pw.values(), *(x for d in per_server.values() for x in d.values())]
    )
    objects: list[b.Obj] = [
        b.namespace(ns, APP),
        b.secret(SECRET, ns, b.labels(APP, "auth"), {secrets.MASTER: master}),
    ]
    objects += scalelite.scalelite_objects(
        v, images, sl_pw, {n: d["api-secret"] for n, d in per_server.items()}
    )
    for s in v.servers:
        objects += server.server_objects(v, s, images, per_server[s.name])
    classes = {
        v.storage.storage_class,
        v.redis_storage.storage_class,
        v.postgresql_storage.storage_class,
    }
    return b.Rendered(
        app=APP,
        namespace=ns,
        objects=tuple(objects),
        storage_classes=tuple(sorted(classes, key=lambda c: c or "")),
        # each server's two pods need a node of their own
        required_spread=len(v.servers),
        extra_cleanup=(
            ("Endpoints", "postgresql"),
            ("Endpoints", "postgresql-config"),
            ("Service", "postgresql-config"),
        ),
    )


def status_lines(v: BBBValues) -> list[str]:
    return firewall_lines(v)


__all__ = ["APP", "SECRET", "BBBValues", "build", "passwords", "status_lines"]

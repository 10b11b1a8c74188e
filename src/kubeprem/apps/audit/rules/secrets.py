"""Checks for secrets kept where anyone who can read the object can read them."""

from __future__ import annotations

from collections.abc import Iterator

from kubeprem.apps.audit.heuristics import (
    CONFIG_LINE,
    PEM_PRIVATE_KEY,
    is_literal_secret_value,
    is_secret_name,
    looks_random,
)
from kubeprem.apps.audit.index import Index
from kubeprem.apps.audit.k8s import as_list, as_map, containers
from kubeprem.apps.audit.model import Hit, Manifest


def _configmap_data(m: Manifest) -> Iterator[tuple[str, str]]:
    if m.kind != "ConfigMap":
        return
    for key, value in as_map(m.obj.get("data")).items():
        if isinstance(value, str):
            yield str(key), value


def configmap_secret_keys(m: Manifest, index: Index) -> Iterator[Hit]:
    for key, value in _configmap_data(m):
        path = ("data", key)
        if PEM_PRIVATE_KEY.search(value):
            yield Hit(path, f"ConfigMap key '{key}' holds a PEM private key")
        elif "\n" not in value.strip():
            if is_secret_name(key) and is_literal_secret_value(value):
                yield Hit(path, f"ConfigMap key '{key}' holds a literal secret")
        else:
            for n, line in enumerate(value.splitlines(), start=1):
                match = CONFIG_LINE.match(line)
                if match and is_secret_name(match[1]) and is_literal_secret_value(match[2]):
                    yield Hit(
                        path,
                        f"ConfigMap key '{key}', line {n} of its text, sets '{match[1]}' "
                        "to a literal secret",
                    )


def configmap_random_values(m: Manifest, index: Index) -> Iterator[Hit]:
    for key, value in _configmap_data(m):
        if is_secret_name(key) or PEM_PRIVATE_KEY.search(value):
            continue  # reported by KP001 already
        if looks_random(value):
            yield Hit(
                ("data", key),
                f"ConfigMap key '{key}' holds a value of {len(value.strip())} characters "
                "that looks randomly generated (a key or token?)",
            )


def env_plain_secrets(m: Manifest, index: Index) -> Iterator[Hit]:
    for cpath, c in containers(m, init=True):
        for i, env in enumerate(as_list(c.get("env"))):
            env = as_map(env)
            name = str(env.get("name") or "")
            if "value" in env and is_secret_name(name) and is_literal_secret_value(env["value"]):
                yield Hit(
                    (*cpath, "env", i, "value"),
                    f"container '{c.get('name')}': env {name} is a password written "
                    "into the manifest",
                )


def env_secret_from_configmap(m: Manifest, index: Index) -> Iterator[Hit]:
    for cpath, c in containers(m, init=True):
        for i, env in enumerate(as_list(c.get("env"))):
            env = as_map(env)
            ref = as_map(as_map(env.get("valueFrom")).get("configMapKeyRef"))
            if not ref:
                continue
            name, key = str(env.get("name") or ""), str(ref.get("key") or "")
            if is_secret_name(name) or is_secret_name(key):
                yield Hit(
                    (*cpath, "env", i, "valueFrom"),
                    f"container '{c.get('name')}': env {name} takes a secret from "
                    f"ConfigMap {ref.get('name')!s}, key {key}",
                )

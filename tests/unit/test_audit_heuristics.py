"""The judgement calls of the audit: secret names, random values, host paths, images."""

from __future__ import annotations

import base64
import random

import pytest

from kubeprem.apps.audit.heuristics import (
    image_tag,
    is_literal_secret_value,
    is_node_agent_path,
    is_secret_name,
    looks_random,
)


@pytest.mark.parametrize(
    "name",
    [
        "FSESL_PASSWORD",
        "ESL_PASSWORD",
        "redisPassword",
        "apiKey",
        "API_KEY",
        "ssh-key",
        "AWS_SECRET_ACCESS_KEY",
        "SECRET_KEY_BASE",
        "DB_PASS",
        "client_secret",
        "jwt.token",
        "requirepass",
        "DB_PASSWORD_B64",
        "password",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "keyspace",
        "primary_key_column",
        "public_key",
        "cache_key",
        "sort-key",
        "token_ttl",
        "password_file",
        "SECRET_NAME",
        "secretName",
        "AWS_ACCESS_KEY_ID",
        "max_tokens",
        "bypass",
        "monkey",
        "PASSWORD_MIN_LENGTH",
        "TOKEN_URL",
        "keyboard_layout",
        "DOMAIN",
    ],
)
def test_not_secret_names(name: str) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize(
    "value",
    ["", " ", "true", "no", None, True, "${PW}", "{{ .pw }}", "<your password>", "/run/secrets/pw"],
)
def test_values_that_are_not_literal_secrets(value: object) -> None:
    assert not is_literal_secret_value(value)


def test_literal_secret_values() -> None:
    assert is_literal_secret_value("hunter2")
    assert is_literal_secret_value(123456)


def test_random_base64_usually_looks_random() -> None:
    rng = random.Random(7)
    samples = [base64.b64encode(rng.randbytes(48)).decode()[:32] for _ in range(200)]
    assert sum(looks_random(s) for s in samples) >= 180


@pytest.mark.parametrize(
    "value",
    [
        "registry.example.com/bbb/freeswitch:2.4.1",
        "3,Kurento*:4,kms*:4,KurentoWebSocketTransport:5",
        "org.apache.kafka.common.serialization.StringSerializer",
        "550e8400-e29b-41d4-a716-446655440000",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "short-Value1!",
        "https://example.org/a?b=XyZ123abcDEF456",
        "The quick brown Fox jumps 12 times",
    ],
)
def test_ordinary_values_do_not_look_random(value: str) -> None:
    assert not looks_random(value)


@pytest.mark.parametrize(
    ("path", "agent"),
    [
        ("/var/log", True),
        ("/var/log/pods", True),
        ("/proc", True),
        ("/sys/", True),
        ("/run/containerd/containerd.sock", True),
        ("/var/lib/kubelet/pods", True),
        ("/var/logs", False),
        ("/var/log/../../etc", False),
        ("/Users/alice/var", False),
        ("/home/bbb", False),
        ("/", False),
        ("", False),
        ("/etc", False),
    ],
)
def test_node_agent_paths(path: str, agent: bool) -> None:
    assert is_node_agent_path(path) is agent


@pytest.mark.parametrize(
    ("image", "tag", "pinned"),
    [
        ("redis", None, False),
        ("redis:7.2", "7.2", False),
        ("registry:5000/a/b", None, False),
        ("registry:5000/a/b:1.0", "1.0", False),
        ("a/b@sha256:abc", None, True),
        ("a/b:latest@sha256:abc", "latest", True),
    ],
)
def test_image_tags(image: str, tag: str | None, pinned: bool) -> None:
    assert image_tag(image) == (tag, pinned)

"""Encryption key rotation as data: the three configurations in order, and
reading which key encrypted a raw etcd value."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from kubeprem.errors import OperationError
from kubeprem.pki.encryption import EncryptionConfig, new_encryption_config
from kubeprem.pki.keys import SeededKeySource
from kubeprem.workflows import encryption_rotate as er

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def test_new_key_is_added_second_then_first_then_alone() -> None:
    keys = SeededKeySource()
    current = new_encryption_config(datetime(2025, 1, 1, tzinfo=UTC), keys)
    old = current.keys[0].name
    add, promote, final = er.steps(current, NOW, keys)
    assert [k.name for k in add.keys] == [old, "key-20261126"]
    assert [k.name for k in promote.keys] == ["key-20261126", old]
    assert [k.name for k in final.keys] == ["key-20261126"]
    assert add.keys[1].secret.reveal() == promote.keys[0].secret.reveal()
    text = promote.render().reveal()
    assert text.index("key-20261126") < text.index(old) < text.index("identity")


def test_same_day_rotation_gets_a_distinct_name() -> None:
    keys = SeededKeySource()
    current = new_encryption_config(NOW, keys)
    _, promote, _ = er.steps(current, NOW, keys)
    assert promote.keys[0].name == "key-20261126-2"


def test_nothing_to_rotate_without_a_key() -> None:
    with pytest.raises(OperationError):
        er.steps(EncryptionConfig(()), NOW, SeededKeySource())


def test_key_of_raw_values() -> None:
    assert er.key_of(b"k8s:enc:aescbc:v1:key-20261126:\x00\x01binary") == "key-20261126"
    assert er.key_of(b'{"kind":"Secret"}') == "identity"
    kvs = [
        {"key": "x", "value": base64.b64encode(b"k8s:enc:aescbc:v1:new:abc").decode()},
        {"key": "y", "value": base64.b64encode(b"k8s:enc:aescbc:v1:old:abc").decode()},
        {"key": "z", "value": base64.b64encode(b"k8s:enc:aescbc:v1:new:def").decode()},
    ]
    assert er.keys_in_etcd(json.dumps({"kvs": kvs})) == {"new": 2, "old": 1}
    assert er.keys_in_etcd(json.dumps({"header": {}})) == {}

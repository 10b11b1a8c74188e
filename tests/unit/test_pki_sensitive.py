"""Sensitive masks secrets; kubeconfigs and the encryption config hold them right."""

from __future__ import annotations

import base64
import pickle
from datetime import UTC, datetime
from io import StringIO

import pytest
from ruamel.yaml import YAML

from kubeprem.pki import SeededKeySource, issue_pki
from kubeprem.pki.encryption import (
    EncryptionConfig,
    new_encryption_config,
    parse_encryption_config,
)
from kubeprem.sensitive import MASK, Sensitive
from kubeprem.site import Site

NOW = datetime(2025, 3, 1, tzinfo=UTC)


def test_masked_everywhere() -> None:
    s = Sensitive(b"hunter2")
    assert repr(s) == str(s) == MASK
    assert f"{s}" == MASK
    assert f"{s!r:>12}" == f"{MASK:>12}"
    assert "hunter2" not in repr([s, {"k": s}])
    assert s.reveal() == b"hunter2"
    assert Sensitive("a") == Sensitive("a") and Sensitive("a") != Sensitive("b")
    assert Sensitive("a") != Sensitive(b"a")


def test_immutable_and_not_picklable() -> None:
    s = Sensitive("x")
    with pytest.raises(AttributeError):
        s._value = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(TypeError):
        Sensitive(1)  # type: ignore[type-var]


def test_bundle_repr_shows_no_key(example_site: Site) -> None:
    bundle = issue_pki(example_site, NOW, SeededKeySource())
    text = repr(bundle) + repr(bundle.cert("admin")) + repr(bundle.encryption)
    assert "PRIVATE KEY" not in text
    assert "client-key-data" not in text
    secret = base64.b64encode(bundle.encryption.keys[0].secret.reveal()).decode()  # type: ignore[union-attr]
    assert secret not in text


def test_kubeconfig_servers(example_site: Site) -> None:
    bundle = issue_pki(example_site, NOW, SeededKeySource())
    yaml = YAML(typ="safe")

    def load(name: str) -> dict:  # type: ignore[type-arg]
        return yaml.load(StringIO(bundle.kubeconfig(name).reveal()))  # type: ignore[no-any-return]

    expected = {
        "admin": ("https://10.240.0.100:8443", "kubernetes-admin"),
        "controller-manager": ("https://127.0.0.1:6443", "system:kube-controller-manager"),
        "scheduler": ("https://127.0.0.1:6443", "system:kube-scheduler"),
        "kube-proxy": ("https://10.240.0.100:8443", "system:kube-proxy"),
        "kubelet-worker-2": ("https://10.240.0.100:8443", "system:node:worker-2"),
    }
    for name, (server, user) in expected.items():
        doc = load(name)
        assert doc["clusters"][0]["cluster"]["server"] == server
        assert doc["users"][0]["name"] == user
        assert doc["current-context"] == f"{user}@kubeprem"
        ca = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
        assert ca == bundle.cluster_ca.cert_pem
        key = base64.b64decode(doc["users"][0]["user"]["client-key-data"])
        assert b"PRIVATE KEY" in key


def test_encryption_config_round_trip() -> None:
    cfg = new_encryption_config(NOW, SeededKeySource())
    assert cfg.keys[0].name == "key-20250301"
    assert len(cfg.keys[0].secret.reveal()) == 32
    doc = YAML(typ="safe").load(StringIO(cfg.render().reveal()))
    assert doc["apiVersion"] == "apiserver.config.k8s.io/v1"
    assert doc["kind"] == "EncryptionConfiguration"
    assert doc["resources"][0]["resources"] == ["secrets"]
    providers = doc["resources"][0]["providers"]
    assert list(providers[0]) == ["aescbc"] and providers[-1] == {"identity": {}}
    assert parse_encryption_config(cfg.render(), "f").keys == cfg.keys


def test_encryption_rotation_steps() -> None:
    keys = SeededKeySource()
    cfg = new_encryption_config(NOW, keys).with_new_key(NOW, keys)
    assert [k.name for k in cfg.keys] == ["key-20250301-2", "key-20250301"]
    cfg = cfg.without_key("key-20250301")
    assert [k.name for k in cfg.keys] == ["key-20250301-2"]
    assert "aescbc" not in EncryptionConfig(()).render().reveal()


def test_bad_encryption_config_does_not_echo_content() -> None:
    from kubeprem.errors import OperationError

    with pytest.raises(OperationError) as err:
        parse_encryption_config(Sensitive("apiVersion: v1\nsecret: TOPSECRET\n"), "enc.yaml")
    assert "TOPSECRET" not in str(err.value)

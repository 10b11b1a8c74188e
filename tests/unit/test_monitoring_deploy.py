"""`kubeprem monitoring deploy`: the Secrets it builds from the PKI and the
values, and the order it applies things in (fake API, stand-in image import)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubeprem.apps.monitoring import Values, parse_values
from kubeprem.cli.monitoring_cmds import _smtp_password
from kubeprem.errors import InputError
from kubeprem.kube.fake import FakeKubeAPI
from kubeprem.pki import SeededKeySource, ensure_pki
from kubeprem.pki.bundle import PkiBundle
from kubeprem.sensitive import Sensitive
from kubeprem.site import LoadedSite, example_text, load_site
from kubeprem.workflows.monitoring import deploy, deploy_objects, secret_objects

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
EMAIL = """
email:
  to: [ops@example.org]
  from: am@example.org
  smarthost: mail.example.org:587
  username: am
  password_file: smtp.pw
"""


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedSite:
    path = tmp_path / "site.yaml"
    path.write_text(example_text(), encoding="utf-8")
    return load_site(str(path))


@pytest.fixture
def bundle(loaded: LoadedSite) -> PkiBundle:
    return ensure_pki(loaded, NOW, SeededKeySource())[1]


def _data(secret: dict[str, object], key: str) -> bytes:
    data = secret["data"]
    assert isinstance(data, dict)
    return base64.b64decode(data[key])


def test_etcd_client_secret_is_the_pki_entry(bundle: PkiBundle) -> None:
    (secret,) = secret_objects(Values(), bundle, None)
    assert secret["metadata"] == secret["metadata"] | {
        "name": "prometheus-etcd-client",
        "namespace": "monitoring",
    }
    cert = x509.load_pem_x509_certificate(_data(secret, "tls.crt"))
    assert cert.subject.rfc4514_string() == "CN=kubeprem:prometheus"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert _data(secret, "ca.crt") == bundle.etcd_ca.cert_pem
    assert cert.issuer == bundle.etcd_ca.cert.subject
    assert _data(secret, "tls.key") == bundle.certs["etcd/prometheus-client"].key_pem.reveal()


def test_smtp_secret_only_with_a_password(tmp_path: Path, bundle: PkiBundle) -> None:
    values_path = tmp_path / "values.yaml"
    values_path.write_text(EMAIL, encoding="utf-8")
    values = parse_values(EMAIL, str(values_path))
    with pytest.raises(InputError, match=r"smtp\.pw"):
        _smtp_password(values, str(values_path))
    (tmp_path / "smtp.pw").write_text("s3cret\n", encoding="utf-8")
    password = _smtp_password(values, str(values_path))
    assert password is not None and password.reveal() == b"s3cret"
    names = [s["metadata"]["name"] for s in secret_objects(values, bundle, password)]
    assert names == ["prometheus-etcd-client", "alertmanager-smtp"]
    assert len(secret_objects(values, bundle, None)) == 1
    assert _smtp_password(Values(), None) is None


def test_deploy_order_namespace_secrets_images_manifests(
    loaded: LoadedSite, bundle: PkiBundle
) -> None:
    api = FakeKubeAPI()
    events: list[str] = []
    manifests, secrets = deploy_objects(
        loaded, Values(prometheus_replicas=1), bundle, Sensitive(b"x")
    )

    def import_step() -> str:
        events.append(f"import after {len([c for c in api.calls if c[0] == 'apply'])} applies")
        return "images present"

    deploy(api, manifests, secrets, import_step, say=events.append, wait=False)
    applied = [(kind, name) for verb, kind, _, name in api.calls if verb == "apply"]
    assert applied[0] == ("Namespace", "monitoring")
    assert ("Secret", "prometheus-etcd-client") in applied
    assert events[1] == "import after 1 applies"  # after the namespace, before everything else
    secret_at = applied.index(("Secret", "prometheus-etcd-client"))
    statefulsets = [i for i, (kind, _) in enumerate(applied) if kind == "StatefulSet"]
    assert statefulsets and secret_at < min(statefulsets)

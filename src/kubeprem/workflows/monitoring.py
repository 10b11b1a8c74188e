"""Deploy the monitoring stack: Secrets, images on the workers, manifests.

Called by ``kubeprem monitoring deploy``. The renderers in
``kubeprem.apps.monitoring`` are pure; this module adds what they must not
hold: the Secrets (Prometheus's etcd client certificate from the PKI, the
SMTP password the operator names), the image imports over SSH and the
server-side apply through the Kubernetes client. Order: Secrets and images
first, so the StatefulSets start with their mounts and images in place.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubeprem.apps.monitoring import Values, objects
from kubeprem.apps.monitoring import layout as L
from kubeprem.images.builder import ImageArchive
from kubeprem.kube.api import KubeAPI
from kubeprem.kube.rollout import apply_all, wait_rolled_out
from kubeprem.pki.bundle import PkiBundle
from kubeprem.sensitive import Sensitive
from kubeprem.site.load import LoadedSite
from kubeprem.workflows.apply import import_images
from kubeprem.workflows.hosts import connected

Obj = dict[str, Any]
Say = Callable[[str], None]

# the catalogue entries the manifests name
IMAGES = ("prometheus", "alertmanager", "node-exporter")
ETCD_CLIENT_CERT = "etcd/prometheus-client"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _secret(namespace: str, name: str, data: Mapping[str, bytes]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {**L.PART_OF, **L.MANAGED}},
        "type": "Opaque",
        "data": {k: _b64(v) for k, v in data.items()},
    }


def secret_objects(
    values: Values, bundle: PkiBundle, smtp_password: Sensitive[bytes] | None
) -> list[Obj]:
    """The Secrets the manifests mount (pure; the keys are revealed only here)."""
    cert = bundle.certs[ETCD_CLIENT_CERT]
    out = [
        _secret(
            values.namespace,
            L.ETCD_CLIENT_SECRET,
            {
                "ca.crt": bundle.etcd_ca.cert_pem,
                "tls.crt": cert.cert_pem,
                "tls.key": cert.key_pem.reveal(),
            },
        )
    ]
    if values.email is not None and smtp_password is not None:
        out.append(
            _secret(
                values.namespace,
                values.email.password_secret,
                {"password": smtp_password.reveal()},
            )
        )
    return out


def deploy_objects(
    loaded: LoadedSite,
    values: Values,
    bundle: PkiBundle,
    smtp_password: Sensitive[bytes] | None,
) -> tuple[list[Obj], list[Obj]]:
    """(manifests, secrets): everything ``deploy`` applies."""
    return objects(loaded.site, values), secret_objects(values, bundle, smtp_password)


async def import_workers(loaded: LoadedSite, images: Sequence[ImageArchive], say: Say) -> str:
    """Import the archives every worker lacks, over SSH; a one-line summary."""
    names = [m.name for m in loaded.site.workers]
    async with connected(loaded, names) as transports:
        _, detail = await import_images(loaded.site, transports, images, say)
    return detail


def deploy(
    api: KubeAPI,
    manifests: Sequence[Obj],
    secrets: Sequence[Obj],
    import_step: Callable[[], str],
    *,
    say: Say,
    wait: bool = True,
    timeout: float = 600.0,
) -> None:
    """Validate everything (dry run), import images, apply, wait for rollout.

    The namespace comes first on its own: the Secrets live in it and the
    StatefulSets mount them. ``import_step`` puts the images on the workers
    (``import_workers`` in the CLI, a stand-in in tests)."""
    namespace = [o for o in manifests if o.get("kind") == "Namespace"]
    apply_all(api, namespace, progress=say)
    apply_all(api, [*secrets, *manifests], dry_run=True)
    say(import_step())
    apply_all(api, secrets, progress=say)
    apply_all(api, manifests, progress=say)
    if wait:
        wait_rolled_out(api, list(manifests), timeout=timeout, progress=say)


__all__ = ["IMAGES", "deploy", "deploy_objects", "import_workers", "secret_objects"]

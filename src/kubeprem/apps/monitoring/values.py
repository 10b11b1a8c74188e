"""The monitoring values file: what the site file does not (yet) say.

Read by ``kubeprem monitoring render --values FILE``; every renderer of this
package takes a ``Values``. The notification settings belong in an optional
``monitoring:`` section of the site file one day; until the site model has
it, they live here, in a file of their own. No secret is ever written here:
the SMTP password is read by Alertmanager from a Secret mounted as a file
(``smtp_auth_password_file``), which the deploy step creates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from kubeprem.errors import InputError

# Components whose scrape jobs once waited for a machine-side change (see
# docs/monitoring.md, "What is scraped"). The controller-manager, scheduler,
# kube-proxy and HAProxy now serve metrics on their machine's address and are
# always scraped: their names are still accepted, so that older values files
# load, and change nothing. ``node-exporter-host`` still says that Debian's
# node exporter runs as a service on the machines without the worker role.
Exposed = Literal[
    "kube-controller-manager", "kube-scheduler", "kube-proxy", "haproxy", "node-exporter-host"
]
EXPOSABLE: tuple[Exposed, ...] = (
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "haproxy",
    "node-exporter-host",
)
ALWAYS_SCRAPED: frozenset[Exposed] = frozenset(
    {"kube-controller-manager", "kube-scheduler", "kube-proxy", "haproxy"}
)

Quantity = Annotated[str, StringConstraints(strict=True, pattern=r"^[1-9][0-9]*(Mi|Gi|Ti)$")]
HostPort = Annotated[
    str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$")
]
Address = Annotated[str, StringConstraints(strict=True, pattern=r"^[^@\s]+@[^@\s]+$")]
URL = Annotated[str, StringConstraints(strict=True, pattern=r"^https?://\S+$")]
Name = Annotated[
    str,
    StringConstraints(
        strict=True, min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Webhook(_Model):
    """A receiver that takes Alertmanager's JSON by HTTP POST. The URL sits
    in a ConfigMap: it must not carry a credential."""

    url: URL
    send_resolved: bool = True


class Email(_Model):
    """E-mail through an SMTP relay; the password is in a Secret (key ``password``)."""

    to: Annotated[list[Address], Field(min_length=1)]
    sender: Annotated[Address, Field(alias="from")]
    smarthost: HostPort
    username: str | None = None
    password_secret: Name = "alertmanager-smtp"
    # a file holding the password; `deploy` puts it in the Secret above
    # (relative to the values file). Absent: the Secret is the operator's.
    password_file: str | None = None
    require_tls: bool = True
    send_resolved: bool = True


Port = Annotated[int, Field(ge=1, le=65535)]


class AppTarget(_Model):
    """An application's exporters, found by DNS: a headless Service in
    ``namespace`` selecting the application's pods, and the exporter ports
    by name and number (``{metrics: 9121}``; PostgreSQL also
    ``metrics-patroni: 8008``). Prometheus asks for the Service's A records
    (every pod address) and scrapes each address on each port: cluster DNS
    serves no SRV records, and Debian's Prometheus has no Kubernetes
    discovery, so the numbers must be given."""

    namespace: Name
    service: Name
    app_instance: Name | None = None  # defaults to the Service name
    ports: Annotated[dict[Name, Port], Field(min_length=1)]

    @property
    def instance(self) -> str:
        return self.app_instance or self.service


class Values(_Model):
    namespace: Name = "monitoring"
    storage_class: Name = "local"
    scrape_interval_seconds: Annotated[int, Field(ge=10, le=300)] = 30
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 15
    prometheus_replicas: Annotated[int, Field(ge=1, le=5)] = 2
    prometheus_storage: Quantity = "20Gi"
    alertmanager_replicas: Annotated[int, Field(ge=1, le=5)] = 2
    alertmanager_storage: Quantity = "1Gi"
    # the etcd backup timer's period; the backup alert fires at twice this
    etcd_backup_interval_hours: Annotated[int, Field(ge=1, le=24 * 7)] = 24
    exposed: list[Exposed] = []
    apps: list[AppTarget] = []
    webhook: Webhook | None = None
    email: Email | None = None

    def exposes(self, component: Exposed) -> bool:
        return component in ALWAYS_SCRAPED or component in self.exposed


def parse_values(text: str, source: str) -> Values:
    """A ``Values`` from YAML text; errors name ``source`` and the field."""
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping of monitoring values")
    try:
        return Values.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InputError(f"{source}: {problems}") from exc


def load_values(path: str | Path | None) -> Values:
    """The values file at ``path``, or the defaults when there is none."""
    if path is None:
        return Values()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{p}: cannot read the values file: {exc.strerror}") from exc
    return parse_values(text, str(p))

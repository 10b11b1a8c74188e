"""The values file of ``kubeprem app ... bigbluebutton``: servers, addresses, images, sizes.

Read by ``build`` (manifests), ``ports`` (firewall lines) and ``scaler``
(its thresholds). Every field has a default so ``kubeprem app render
bigbluebutton`` works without a file; the defaults use documentation
addresses (203.0.113.0/24, example.org) that an operator must replace.
docs/bigbluebutton.md documents each key.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator, model_validator

from kubeprem.apps.values import ClusterDomain, Name, ResourcesV, StorageV, Values, _Model

Host = Annotated[
    str,
    StringConstraints(
        strict=True,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$",
    ),
]
# a server's name becomes the namespace bbb-<name> and a node label value
ServerName = Annotated[
    str, StringConstraints(strict=True, max_length=20, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]
Ref = Annotated[str, StringConstraints(strict=True, min_length=1, pattern=r"^[^\s]+$")]

# BigBlueButton's per-server components, in the order of BBB.md's table
APP_COMPONENTS = (
    "nginx",
    "bbb-web",
    "akka-apps",
    "graphql-server",
    "graphql-middleware",
    "graphql-actions",
    "etherpad",
    "bbb-pads",
    "export-annotations",
    "recordings",
)
MEDIA_COMPONENTS = ("freeswitch", "fsesl-akka", "webrtc-sfu", "webrtc-recorder", "coturn")
SCALELITE_COMPONENTS = ("api", "nginx", "poller", "recording-importer")

DEFAULT_SIZES: dict[str, ResourcesV] = {
    "nginx": ResourcesV(cpu="100m", memory="128Mi"),
    "bbb-web": ResourcesV(cpu="500m", memory="1Gi"),
    "akka-apps": ResourcesV(cpu="1", memory="2Gi"),
    "graphql-server": ResourcesV(cpu="500m", memory="1Gi"),
    "graphql-middleware": ResourcesV(cpu="250m", memory="512Mi"),
    "graphql-actions": ResourcesV(cpu="100m", memory="256Mi"),
    "etherpad": ResourcesV(cpu="200m", memory="512Mi"),
    "bbb-pads": ResourcesV(cpu="100m", memory="128Mi"),
    "export-annotations": ResourcesV(cpu="250m", memory="512Mi"),
    "recordings": ResourcesV(cpu="1", memory="2Gi"),
    "freeswitch": ResourcesV(cpu="1", memory="1Gi"),
    "fsesl-akka": ResourcesV(cpu="100m", memory="512Mi"),
    "webrtc-sfu": ResourcesV(cpu="2", memory="2Gi"),
    "webrtc-recorder": ResourcesV(cpu="500m", memory="512Mi"),
    "coturn": ResourcesV(cpu="250m", memory="256Mi"),
    "db-init": ResourcesV(cpu="50m", memory="64Mi"),
    "scalelite-api": ResourcesV(cpu="250m", memory="512Mi"),
    "scalelite-nginx": ResourcesV(cpu="100m", memory="128Mi"),
    "scalelite-poller": ResourcesV(cpu="100m", memory="256Mi"),
    "scalelite-recording-importer": ResourcesV(cpu="100m", memory="256Mi"),
}


class ServerV(_Model):
    name: ServerName
    # the address browsers reach this server's media at (mediasoup announcedIp,
    # FreeSWITCH external_rtp_ip, coturn external-ip); the node's own (private)
    # address is what the processes bind to
    public_ipv4: str
    host: Host | None = None  # default: <name>.<domain>
    enabled: bool = True  # false: Scalelite cordons it (drain), meetings run to their end
    load_multiplier: float = Field(default=1.0, gt=0)

    @field_validator("public_ipv4")
    @classmethod
    def _ipv4(cls, v: str) -> str:
        ipaddress.IPv4Address(v)
        return v


class ImagesV(_Model):
    # the compose project's image names: <registry>/bbb-docker-<component>:<tag>
    registry: Ref = "docker.io/alangecker"
    tag: Ref = "v3.0"
    scalelite_registry: Ref = "docker.io/blindsidenetworks"
    scalelite_tag: Ref = "v1.6"
    coturn: Ref = "docker.io/coturn/coturn:4.6-alpine"
    # component -> full reference, for mirrors that rename single images
    overrides: dict[str, Ref] = Field(default_factory=dict)


class RecordingsV(_Model):
    # the ReadWriteMany share Scalelite and every server's recording
    # processing mount (NFS export: on-premises, a NAS or a Linux nfs-server)
    nfs_server: Host | str = "nfs.bbb.example.org"
    nfs_path: Annotated[str, StringConstraints(strict=True, pattern=r"^/")] = (
        "/export/bbb-recordings"
    )


class ScalerV(_Model):
    users_per_server: int = Field(default=250, ge=1)
    scale_up_at: float = Field(default=0.8, gt=0, le=1)  # of the enabled servers' capacity
    scale_down_at: float = Field(default=0.3, gt=0, lt=1)
    min_servers: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _order(self) -> ScalerV:
        if self.scale_down_at >= self.scale_up_at:
            raise ValueError("scale_down_at must be below scale_up_at")
        return self


class BBBValues(Values):
    namespace: Name = "bigbluebutton"  # Scalelite, its Redis and PostgreSQL, the passwords
    domain: Host = "bbb.example.org"  # Scalelite answers here; servers at <name>.<domain>
    servers: list[ServerV] = Field(
        default=[ServerV(name="a", public_ipv4="203.0.113.10")], min_length=1
    )
    images: ImagesV = ImagesV()
    recordings: RecordingsV = RecordingsV()
    # each server's folders (/var/bigbluebutton, FreeSWITCH, mediasoup, recorder)
    storage: StorageV = StorageV(size="100Gi")
    redis_storage: StorageV = StorageV(size="2Gi")
    postgresql_storage: StorageV = StorageV(size="5Gi")
    # for the full names inside each Redis (HAProxy's resolver needs them)
    cluster_domain: ClusterDomain = "cluster.local"
    # the machines' network: media pods use the node's network, so policies
    # admit them to Redis by this address block
    node_cidr: str = "10.240.0.0/24"
    tls_secret: Name = "bbb-tls"  # kubernetes.io/tls Secret the operator puts in each namespace
    sizes: dict[str, ResourcesV] = Field(default_factory=dict)
    scaler: ScalerV = ScalerV()
    enable_recording: bool = True

    @field_validator("node_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        ipaddress.IPv4Network(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> BBBValues:
        names = [s.name for s in self.servers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"server names must be unique: {', '.join(dupes)}")
        unknown = sorted(set(self.sizes) - set(DEFAULT_SIZES))
        if unknown:
            raise ValueError(
                f"sizes: unknown component(s) {', '.join(unknown)}; "
                f"known: {', '.join(DEFAULT_SIZES)}"
            )
        if self.namespace.startswith("bbb-") and self.namespace[4:] in names:
            raise ValueError(f"namespace {self.namespace} is a server's namespace")
        return self

    def size(self, component: str) -> ResourcesV:
        return self.sizes.get(component) or DEFAULT_SIZES[component]

    def host_of(self, s: ServerV) -> str:
        return s.host or f"{s.name}.{self.domain}"

    def image(self, component: str) -> str:
        i = self.images
        if component in i.overrides:
            return i.overrides[component]
        if component == "coturn":
            return i.coturn
        if component.startswith("scalelite-"):
            return f"{i.scalelite_registry}/scalelite:{i.scalelite_tag}-{component[10:]}"
        return f"{i.registry}/bbb-docker-{component}:{i.tag}"


def server_namespace(s: ServerV) -> str:
    return f"bbb-{s.name}"


__all__ = [
    "APP_COMPONENTS",
    "DEFAULT_SIZES",
    "MEDIA_COMPONENTS",
    "SCALELITE_COMPONENTS",
    "BBBValues",
    "ImagesV",
    "RecordingsV",
    "ScalerV",
    "ServerV",
    "server_namespace",
]

"""The typed site model: one declarative file describes one cluster.

Built by ``kubeprem.site.load`` from YAML; every other layer reads these
frozen values and never the YAML itself. Field-level checks live here;
checks across fields (overlapping CIDRs, etcd quorum, ...) live in
``kubeprem.site.checks`` so they can name the offending line.
"""

from __future__ import annotations

from functools import cached_property
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_interface, ip_network
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StringConstraints

Role = Literal["etcd", "control-plane", "worker", "lb"]
ROLES: tuple[Role, ...] = ("etcd", "control-plane", "worker", "lb")

DNSLabel = Annotated[
    str,
    StringConstraints(
        strict=True, min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    ),
]
DNSName = Annotated[
    str,
    StringConstraints(
        strict=True,
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    ),
]
Version = Annotated[str, StringConstraints(strict=True, pattern=r"^v?\d+\.\d+\.\d+$")]
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
Text = Annotated[str, StringConstraints(strict=True, min_length=1)]
# YAML 1.2 reads `no` as text; strict keeps pydantic from turning it into False.
Flag = Annotated[bool, Field(strict=True)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class SSH(_Model):
    """How kubeprem reaches machines. ``key`` is relative to the site file;
    when absent, kubeprem uses (and creates) its own key in the state folder."""

    user: Text = "root"
    port: Port = 22
    key: Text | None = None


class SSHOverride(_Model):
    user: Text | None = None
    port: Port | None = None
    key: Text | None = None


class Machine(_Model):
    name: DNSLabel
    address: IPv4Address
    roles: Annotated[list[Role], Field(min_length=1)]
    ssh: SSHOverride = SSHOverride()
    pod_cidr: IPv4Network | None = None
    interface: Text | None = None
    vrrp_priority: Annotated[int, Field(strict=True, ge=1, le=254)] | None = None

    def has(self, role: Role) -> bool:
        return role in self.roles


class Cluster(_Model):
    name: DNSLabel
    kubernetes_version: Version
    domain: DNSName = "cluster.local"

    @property
    def version(self) -> str:
        """The version without a leading ``v``: ``1.20.2``."""
        return self.kubernetes_version.removeprefix("v")

    @property
    def minor(self) -> tuple[int, int]:
        major, minor, _ = self.version.split(".")
        return int(major), int(minor)


class Network(_Model):
    node_cidr: IPv4Network = IPv4Network("10.240.0.0/24")
    pod_cidr: IPv4Network = IPv4Network("10.200.0.0/16")
    node_pod_prefix: Annotated[int, Field(strict=True, ge=8, le=30)] = 24
    service_cidr: IPv4Network = IPv4Network("10.32.0.0/24")
    cluster_dns: IPv4Address = IPv4Address("10.32.0.10")

    @property
    def kubernetes_service_ip(self) -> IPv4Address:
        """The first service address, which the ``kubernetes`` Service takes."""
        return self.service_cidr.network_address + 1


class API(_Model):
    """The API endpoint: a virtual IP (keepalived/VRRP) in front of HAProxy on
    the ``lb`` machines, which balances over every kube-apiserver."""

    vip: IPv4Address
    port: Port = 8443
    apiserver_port: Port = 6443
    interface: Text = "eth0"
    vrrp_router_id: Annotated[int, Field(strict=True, ge=1, le=255)] = 51


class Encryption(_Model):
    at_rest: Flag = True


class Audit(_Model):
    enabled: Flag = True
    max_age_days: Annotated[int, Field(strict=True, ge=1)] = 30
    max_backups: Annotated[int, Field(strict=True, ge=1)] = 10
    max_size_mb: Annotated[int, Field(strict=True, ge=1)] = 100


class Artifacts(_Model):
    """Where the Kubernetes binaries come from.

    ``go-modules``: built from the Go modules kubeprem pins (go.mod and
    go.sum per component), for current releases.
    ``debian-source``: built from Debian's source package (1.20 only, legacy).
    ``mirror``: a directory or HTTP(S) URL laid out like the upstream release
    downloads, checked against its published checksums (the air-gapped way).
    """

    source: Literal["go-modules", "debian-source", "mirror"] = "go-modules"
    mirror: Text | None = None
    cache: Text | None = None


class Image(_Model):
    name: Text
    archive: Text | None = None


def _network(value: object) -> IPv4Network | IPv6Network:
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a network like 192.0.2.0/24 or 2001:db8::/32")
    try:
        return ip_network(value, strict=True)
    except ValueError as exc:
        try:
            loose = ip_network(value, strict=False)
        except ValueError:
            raise ValueError(
                f"'{value}' is not a network like 192.0.2.0/24 or 2001:db8::/32"
            ) from exc
        raise ValueError(
            f"'{value}' has host bits set; the network is {loose}, or write a single "
            f"address as {ip_interface(value).ip}/{loose.max_prefixlen}"
        ) from exc


def _port_spec(value: object) -> int | str:
    """A port number, or a "low-high" range; digits in quotes are a number."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= 65535:
            return value
        raise ValueError(f"port {value} is outside 1-65535")
    if isinstance(value, str):
        low, sep, high = value.partition("-")
        if sep and low.isdigit() and high.isdigit():
            if not 1 <= int(low) <= int(high) <= 65535:
                raise ValueError(f"port range {value} must go up, within 1-65535")
            return f"{int(low)}-{int(high)}"
    raise ValueError('a port is a number (9100) or a range in quotes ("8000-8080")')


# An address range in the firewall's settings; IPv6 too, so that admin
# networks can name the operators' IPv6 ranges (the cluster itself is IPv4).
AnyNetwork = Annotated[IPv4Network | IPv6Network, PlainValidator(_network)]
PortSpec = Annotated[int | str, PlainValidator(_port_spec)]
ANYWHERE: tuple[IPv4Network | IPv6Network, ...] = (IPv4Network("0.0.0.0/0"), IPv6Network("::/0"))


class Opening(_Model):
    """An extra port opened in the node firewall, and why.

    ``ports``: numbers or ``"low-high"`` ranges. Applies to the machines
    named in ``machines`` and those with any of ``roles``; with neither, to
    every machine. ``reason`` is required: a firewall opening nobody can
    explain is one nobody dares to close.
    """

    reason: Text
    protocol: Literal["tcp", "udp"] = "tcp"
    ports: Annotated[list[PortSpec], Field(min_length=1)]
    sources: Annotated[list[AnyNetwork], Field(min_length=1)]
    roles: list[Role] = []
    machines: list[DNSLabel] = []

    def applies_to(self, machine: Machine) -> bool:
        if not self.roles and not self.machines:
            return True
        return machine.name in self.machines or any(machine.has(r) for r in self.roles)

    def port_ranges(self) -> list[tuple[int, int]]:
        """Each entry as (low, high); a single port is (port, port)."""
        out = []
        for p in self.ports:
            if isinstance(p, int):
                out.append((p, p))
            else:
                low, _, high = p.partition("-")
                out.append((int(low), int(high)))
        return out


class Firewall(_Model):
    """The node firewall kubeprem renders (nftables, table ``inet kubeprem``).

    ``admin_networks``: where SSH and the API (each kube-apiserver's port and
    the VIP's) may be reached from, besides the node subnet for the API.
    The default is anywhere, so that turning the firewall on locks nobody
    out; narrow it to the networks you administer from.
    ``nodeport_networks``: clients of NodePort Services besides the node
    subnet and the pods. ``monitoring_networks``: a monitoring system
    outside the cluster; may reach the kubelets (port 10250) besides the
    control-plane machines, and etcd's metrics port (2381) and the other
    metrics ports besides the node subnet and the pods.
    """

    enabled: Flag = True
    admin_networks: list[AnyNetwork] = list(ANYWHERE)
    nodeport_networks: list[AnyNetwork] = []
    monitoring_networks: list[AnyNetwork] = []
    openings: list[Opening] = []


class Site(_Model):
    cluster: Cluster
    api: API
    machines: Annotated[list[Machine], Field(min_length=1)]
    network: Network = Network()
    ssh: SSH = SSH()
    encryption: Encryption = Encryption()
    audit: Audit = Audit()
    artifacts: Artifacts = Artifacts()
    images: list[Image] = []
    firewall: Firewall = Firewall()

    # -- derived views, computed once --------------------------------------

    def with_role(self, role: Role) -> list[Machine]:
        return [m for m in self.machines if role in m.roles]

    @property
    def etcd_members(self) -> list[Machine]:
        return self.with_role("etcd")

    @property
    def controllers(self) -> list[Machine]:
        return self.with_role("control-plane")

    @property
    def workers(self) -> list[Machine]:
        return self.with_role("worker")

    @property
    def load_balancers(self) -> list[Machine]:
        return self.with_role("lb")

    def machine(self, name: str) -> Machine:
        for m in self.machines:
            if m.name == name:
                return m
        raise KeyError(name)

    @cached_property
    def pod_cidrs(self) -> dict[str, IPv4Network]:
        """Each worker's pod CIDR: pinned in the file, or the next free
        ``/node_pod_prefix`` subnet of the pod CIDR in file order.

        Pinned ranges are taken first, so pinning one worker never moves
        another. ``kubeprem.site.checks`` guarantees they fit and are unique.
        """
        pinned = {m.name: m.pod_cidr for m in self.workers if m.pod_cidr is not None}
        taken = set(pinned.values())
        free = (
            s
            for s in self.network.pod_cidr.subnets(new_prefix=self.network.node_pod_prefix)
            if not any(s.overlaps(t) for t in taken)
        )
        out: dict[str, IPv4Network] = {}
        for m in self.workers:
            out[m.name] = pinned.get(m.name) or next(free)
        return out

    def vrrp_priority(self, machine: Machine) -> int:
        """Explicit priority, or 150 for the first lb machine, 140, 130, ..."""
        if machine.vrrp_priority is not None:
            return machine.vrrp_priority
        index = [m.name for m in self.load_balancers].index(machine.name)
        return max(1, 150 - 10 * index)

    @property
    def api_server_url(self) -> str:
        """What clients outside the control plane use: the VIP."""
        return f"https://{self.api.vip}:{self.api.port}"


def pod_subnet_count(network: Network) -> int:
    """How many per-node pod subnets the pod CIDR holds."""
    bits = network.node_pod_prefix - network.pod_cidr.prefixlen
    return 2**bits if bits >= 0 else 0


__all__ = [
    "ANYWHERE",
    "API",
    "ROLES",
    "SSH",
    "AnyNetwork",
    "Artifacts",
    "Audit",
    "Cluster",
    "Encryption",
    "Firewall",
    "Image",
    "Machine",
    "Network",
    "Opening",
    "PortSpec",
    "Role",
    "SSHOverride",
    "Site",
    "pod_subnet_count",
]

"""The one catalogue of container images kubeprem uses: data, not code.

Read by the builder (``kubeprem.images.builder``), by ``kubeprem images
list`` and by apply (through ``image_archives``). Every name, tag, entrypoint,
user and port of an image lives here and nowhere else.

For the lab the images are built from Debian bookworm packages; an operator
who mirrors real images points the site file at those archives instead, and
may rename the built ones (``registry`` prefix, or one reference per image).

``source`` says how an image is made:

- ``pause``: ``pause.c`` from the Kubernetes source, compiled ``gcc -Os -static``;
  one layer holding ``/pause``. Its reference follows the Kubernetes version
  (``features(site).pause_image``) because containerd's ``sandbox_image``
  must name it exactly.
- ``file``: files copied from Debian packages installed on the build host;
  one layer (busybox: the static binary alone).
- ``apt``: the shared debootstrap minbase layer, then one layer holding what
  ``apt-get install --no-install-recommends PACKAGES`` added to it.
- ``go``: a command built from a Go build module kubeprem pins
  (``kubeprem.artifacts.gomod``, as the cluster's binaries are: ``-trimpath``,
  stripped, ``-mod=readonly``), static, on a base of a few files copied from
  Debian packages installed on the build host (``files``: the user database,
  CA certificates); one layer, no shell, no package manager.

``version_of`` names the package (for ``go``: the build module's command)
whose upstream version the tag states; the builder refuses to build when
that version no longer matches the tag, so a tag never lies about what the
image holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["pause", "file", "apt", "go"]

DEFAULT_REGISTRY = "kubeprem.local"
SUITE = "bookworm"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageSpec:
    """One image of the catalogue."""

    name: str
    repository: str  # under the registry prefix, e.g. "redis"
    tag: str
    contains: str
    source: Source
    packages: tuple[str, ...] = ()
    version_of: str | None = None
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    # a user name (resolved to numeric uid:gid from the image's /etc/passwd at
    # build time, so Kubernetes' runAsNonRoot can check it) or "uid:gid"
    user: str = "0:0"
    ports: tuple[str, ...] = ()  # "6379/tcp"
    env: tuple[str, ...] = (PATH_ENV,)
    workdir: str = "/"
    # host files copied into the image for source="file": (host path, image path)
    files: tuple[tuple[str, str], ...] = ()
    # packages purged after installing although others depend on them
    # (dpkg --purge --force-depends): large optional parts of a dependency
    force_remove: tuple[str, ...] = ()
    # image paths removed after installing (data a package's postinst created)
    remove: tuple[str, ...] = ()
    # source="go": (command, version) of the pinned build module
    # (kubeprem/artifacts/modules/<command>-<version>/), installed as /<command>
    go_build: tuple[Literal["coredns"], str] | None = None
    notes: str = ""

    def default_ref(self, registry: str = DEFAULT_REGISTRY) -> str:
        return f"{registry}/{self.repository}:{self.tag}"


# The base of the ``go`` images: Debian's master user and group files (user
# nobody, 65534) and the CA bundle, for servers that talk TLS to an upstream.
GO_BASE_PACKAGES = ("base-passwd", "ca-certificates")
GO_BASE_FILES = (
    ("/usr/share/base-passwd/passwd.master", "/etc/passwd"),
    ("/usr/share/base-passwd/group.master", "/etc/group"),
    ("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt"),
)


CATALOGUE: tuple[ImageSpec, ...] = (
    ImageSpec(
        name="pause",
        repository="pause",
        tag="3.2",
        contains="the pod sandbox's pause process, from build/pause/linux/pause.c of Kubernetes",
        source="pause",
        entrypoint=("/pause",),
        user="65535:65535",
        env=(),
        notes="reference = containerd's sandbox_image for the site's Kubernetes version",
    ),
    ImageSpec(
        name="busybox",
        repository="busybox",
        tag="1.35.0-bookworm",
        contains="Debian's busybox-static binary alone (run applets as `/bin/busybox sh ...`)",
        source="file",
        packages=("busybox-static",),
        version_of="busybox-static",
        files=(("/bin/busybox", "/bin/busybox"),),
        entrypoint=("/bin/busybox",),
        cmd=("sh",),
    ),
    ImageSpec(
        name="redis",
        repository="redis",
        tag="7.0.15-bookworm",
        contains="redis-server and redis-sentinel (with redis-cli)",
        source="apt",
        packages=("redis-server", "redis-sentinel"),
        version_of="redis-server",
        entrypoint=("/usr/bin/redis-server",),
        user="redis",
        ports=("6379/tcp", "26379/tcp"),
        workdir="/var/lib/redis",
        notes="configuration comes from the pod (ConfigMap); entrypoint redis-sentinel for sentinels",
    ),
    ImageSpec(
        name="postgresql",
        repository="postgresql-patroni",
        tag="15.20-patroni3.0.2-bookworm",
        contains="postgresql-15 and patroni (Kubernetes API as its store)",
        source="apt",
        # patroni Depends on python3-etcd | python3-consul | python3-kazoo |
        # python3-kubernetes; its Kubernetes store (patroni/dcs/kubernetes.py)
        # talks to the API with urllib3 itself, so apt's first, smallest
        # alternative (python3-etcd) satisfies the dependency.
        packages=("postgresql-15", "patroni"),
        version_of="postgresql-15",
        entrypoint=("/usr/bin/patroni",),
        cmd=("/etc/patroni/patroni.yml",),
        user="postgres",
        ports=("5432/tcp", "8008/tcp"),
        env=(
            "PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8",
        ),
        workdir="/var/lib/postgresql",
        # LLVM (and Z3, which it needs) only serve PostgreSQL's optional JIT:
        # 130 MB. Without llvmjit.so PostgreSQL runs with JIT unavailable.
        force_remove=("libllvm14", "libz3-4"),
        # postgresql-common's postinst creates a "main" cluster; Patroni makes its own
        remove=(
            "/etc/postgresql/15/main",
            "/var/lib/postgresql/15/main",
            "/usr/lib/postgresql/15/lib/llvmjit.so",
            "/usr/lib/postgresql/15/lib/llvmjit_types.bc",
            "/usr/lib/postgresql/15/lib/bitcode",
            # ssl-cert's postinst makes a key pair; one baked-in key would be
            # shared by every cluster, so certificates come from the pod
            "/etc/ssl/private/ssl-cert-snakeoil.key",
            "/etc/ssl/certs/ssl-cert-snakeoil.pem",
        ),
    ),
    ImageSpec(
        name="haproxy",
        repository="haproxy",
        tag="2.6.12-bookworm",
        contains="haproxy (runs in the foreground, master-worker)",
        source="apt",
        packages=("haproxy",),
        version_of="haproxy",
        entrypoint=("/usr/sbin/haproxy",),
        cmd=("-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"),
        user="haproxy",
        notes="ports depend on the mounted configuration; bind above 1024",
    ),
    ImageSpec(
        name="node-exporter",
        repository="node-exporter",
        tag="1.5.0-bookworm",
        contains="prometheus-node-exporter",
        source="apt",
        packages=("prometheus-node-exporter",),
        version_of="prometheus-node-exporter",
        entrypoint=("/usr/bin/prometheus-node-exporter",),
        user="65534:65534",
        ports=("9100/tcp",),
    ),
    ImageSpec(
        name="redis-exporter",
        repository="redis-exporter",
        tag="1.45.0-bookworm",
        contains="prometheus-redis-exporter",
        source="apt",
        packages=("prometheus-redis-exporter",),
        version_of="prometheus-redis-exporter",
        entrypoint=("/usr/bin/prometheus-redis-exporter",),
        user="65534:65534",
        ports=("9121/tcp",),
    ),
    ImageSpec(
        name="postgres-exporter",
        repository="postgres-exporter",
        tag="0.11.1-bookworm",
        contains="prometheus-postgres-exporter",
        source="apt",
        # Depends: daemon | systemd-sysv; name the small one so apt does not pull systemd
        packages=("prometheus-postgres-exporter", "daemon"),
        version_of="prometheus-postgres-exporter",
        entrypoint=("/usr/bin/prometheus-postgres-exporter",),
        user="65534:65534",
        ports=("9187/tcp",),
    ),
    ImageSpec(
        name="prometheus",
        repository="prometheus",
        tag="2.42.0-bookworm",
        contains="prometheus server with its web console",
        source="apt",
        packages=("prometheus",),
        version_of="prometheus",
        entrypoint=("/usr/bin/prometheus",),
        cmd=(
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/var/lib/prometheus/metrics2",
            "--web.console.libraries=/usr/share/prometheus/console_libraries",
            "--web.console.templates=/etc/prometheus/consoles",
        ),
        user="prometheus",
        ports=("9090/tcp",),
        # every tz database release unpacked (200 MB); the web UI loads only
        # moment-timezone-with-data.min.js
        remove=("/usr/share/javascript/moment-timezone/data",),
        workdir="/var/lib/prometheus",
    ),
    ImageSpec(
        name="alertmanager",
        repository="alertmanager",
        tag="0.25.0-bookworm",
        contains="prometheus-alertmanager",
        source="apt",
        packages=("prometheus-alertmanager",),
        version_of="prometheus-alertmanager",
        entrypoint=("/usr/bin/prometheus-alertmanager",),
        cmd=(
            "--config.file=/etc/prometheus/alertmanager.yml",
            "--storage.path=/var/lib/prometheus/alertmanager",
        ),
        user="prometheus",
        ports=("9093/tcp",),
        workdir="/var/lib/prometheus",
    ),
    ImageSpec(
        name="cluster-dns",
        repository="cluster-dns",
        tag="2.90-bookworm",
        contains="dnsmasq and python3: the lab's cluster DNS (no CoreDNS in Debian)",
        source="apt",
        # (contains: the lab ran it before CoreDNS was built; the text is part of
        # the image's key and labels, so it stays until the image changes anyway)
        # dnsmasq-base is the binary alone (the dnsmasq package adds an init
        # script and a system service); python3 runs kubeprem's controller,
        # which the pod mounts from a ConfigMap (kubeprem.addons.dns)
        packages=("dnsmasq-base", "python3"),
        version_of="dnsmasq-base",
        entrypoint=("/usr/sbin/dnsmasq",),
        cmd=("--keep-in-foreground", "--log-facility=-", "--port=5353"),
        user="nobody",
        ports=("5353/udp", "5353/tcp", "8081/tcp"),
        notes="arguments and the controller come from the pod; runs as nobody on port 5353",
    ),
    ImageSpec(
        name="coredns",
        repository="coredns",
        tag="1.15.0-bookworm",
        contains="CoreDNS built from its Go module (static, /coredns alone with passwd, group, CA bundle)",
        source="go",
        packages=GO_BASE_PACKAGES,
        version_of="coredns",
        go_build=("coredns", "1.15.0"),
        files=GO_BASE_FILES,
        entrypoint=("/coredns",),
        user="65534:65534",
        ports=("5353/udp", "5353/tcp", "8080/tcp", "8181/tcp", "9153/tcp"),
        env=(),
        notes="the Corefile comes from the pod (kubeprem.addons.dns); runs as nobody on port 5353",
    ),
)


def by_name(name: str) -> ImageSpec:
    for spec in CATALOGUE:
        if spec.name == name:
            return spec
    raise KeyError(name)


NAMES: tuple[str, ...] = tuple(s.name for s in CATALOGUE)

"""containerd on workers: its config.toml and systemd unit (and runc's entry).

Called by the render command and the plan layer for machines with the
``worker`` role; other machines get an empty result. runc needs no file of
its own: it is the containerd runtime entry below (``runc`` with
``BinaryName`` pointing at the runc kubeprem installs), nothing more.

The cgroup driver is decided here, once, and the kubelet renderer reads it
from ``cgroup_driver`` so the two can never disagree: ``systemd`` on real
servers (systemd is PID 1 and owns the cgroup tree), ``cgroupfs`` inside the
lab's systemd-nspawn machines (LAB-NOTES.md: that is what ran there).
"""

from __future__ import annotations

from typing import Literal

from kubeprem.components.base import File, HostContext, Rendered, RenderOptions
from kubeprem.components.paths import BIN_DIR, CNI_BIN_DIR, CNI_CONF_DIR, CONTAINERD_CONFIG
from kubeprem.components.systemd import unit
from kubeprem.components.versions import features

COMPONENT = "containerd"
SERVICE = "containerd.service"
SOCKET = "/run/containerd/containerd.sock"
ENDPOINT = f"unix://{SOCKET}"
RUNC = f"{BIN_DIR}/runc"

CgroupDriver = Literal["systemd", "cgroupfs"]


def cgroup_driver(options: RenderOptions) -> CgroupDriver:
    """The cgroup driver containerd's runc and the kubelet both use."""
    return "cgroupfs" if options.in_container else "systemd"


def config_toml(ctx: HostContext) -> str:
    """containerd's config.toml for the site's containerd: version 2
    (containerd 1.6, the 1.20 row) or version 3 (containerd 2.x)."""
    version = features(ctx.site).containerd_config_version
    if version == 2:
        return _config_v2(ctx)
    if version == 3:
        return _config_v3(ctx)
    raise ValueError(f"containerd config version {version} is not rendered by kubeprem")


def _head(version: int) -> list[str]:
    return [
        "# Rendered by kubeprem; changes here are overwritten.",
        f"version = {version}",
        'root = "/var/lib/containerd"',
        'state = "/run/containerd"',
        "",
        "[grpc]",
        f'  address = "{SOCKET}"',
        "",
    ]


def _systemd_cgroup(ctx: HostContext) -> str:
    return "true" if cgroup_driver(ctx.options) == "systemd" else "false"


# Lab only (LAB-NOTES.md): the nspawn machine lacks CAP_SYS_RESOURCE, so runc
# cannot lower oom_score_adj and every pod sandbox fails without this.
RESTRICT_OOM = "  restrict_oom_score_adj = true"


def _runc_runtime(ctx: HostContext, table: str) -> list[str]:
    """runc as the default runtime, under the CRI plugin's ``containerd``
    table (its name differs between config versions 2 and 3)."""
    runc = f"{table}.runtimes.runc"
    return [
        f"[{table}]",
        '  default_runtime_name = "runc"',
        "",
        f"[{runc}]",
        '  runtime_type = "io.containerd.runc.v2"',
        "",
        f"[{runc}.options]",
        f'  BinaryName = "{RUNC}"',
        f"  SystemdCgroup = {_systemd_cgroup(ctx)}",
        "",
    ]


def _config_v2(ctx: HostContext) -> str:
    feats = features(ctx.site)
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    lines = [*_head(2), f"[{cri}]", f'  sandbox_image = "{feats.pause_image}"']
    if ctx.options.in_container:
        lines.append(RESTRICT_OOM)
    lines += [
        "",
        *_runc_runtime(ctx, f"{cri}.containerd"),
        f"[{cri}.cni]",
        f'  bin_dir = "{CNI_BIN_DIR}"',
        f'  conf_dir = "{CNI_CONF_DIR}"',
        "",
    ]
    return "\n".join(lines)


def _config_v3(ctx: HostContext) -> str:
    """containerd 2 split the CRI plugin into images and runtime plugins
    (docs/cri/config.md, internal/cri/config/config.go of containerd 2.4):
    the sandbox image is a pinned image of the images plugin (never garbage
    collected), the CNI folders a list."""
    feats = features(ctx.site)
    images = "plugins.'io.containerd.cri.v1.images'"
    runtime = "plugins.'io.containerd.cri.v1.runtime'"
    lines = [*_head(3), f"[{images}.pinned_images]", f'  sandbox = "{feats.pause_image}"', ""]
    if ctx.options.in_container:
        lines += [f"[{runtime}]", RESTRICT_OOM, ""]
    lines += [
        *_runc_runtime(ctx, f"{runtime}.containerd"),
        f"[{runtime}.cni]",
        f'  bin_dirs = ["{CNI_BIN_DIR}"]',
        f'  conf_dir = "{CNI_CONF_DIR}"',
        "",
    ]
    return "\n".join(lines)


def unit_file(ctx: HostContext) -> tuple[str, str]:
    # The overlay module backs containerd's default snapshotter. A container
    # cannot load kernel modules (the lab host loads them), so no modprobe there.
    pre: list[list[str]] = [] if ctx.options.in_container else [["-/sbin/modprobe", "overlay"]]
    return unit(
        SERVICE,
        "containerd container runtime",
        [f"{BIN_DIR}/containerd", f"--config={CONTAINERD_CONFIG}"],
        documentation="https://containerd.io",
        after=("network.target", "local-fs.target"),
        wants=(),
        service_type="notify",
        limit_nofile=1048576,
        exec_start_pre=pre,
        extra_service=(
            # containerd's shims and the containers they start live in the
            # service's cgroup; systemd must neither kill them on restart nor
            # take the cgroup back.
            "Delegate=yes",
            "KillMode=process",
            "LimitNPROC=infinity",
            "LimitCORE=infinity",
            "TasksMax=infinity",
            "OOMScoreAdjust=-999",
        ),
    )


def render(ctx: HostContext) -> Rendered:
    if not ctx.machine.has("worker"):
        return Rendered(COMPONENT, ())
    unit_path, unit_text = unit_file(ctx)
    return Rendered(
        COMPONENT,
        (File.text(CONTAINERD_CONFIG, config_toml(ctx)), File.text(unit_path, unit_text)),
        services=(SERVICE,),
    )

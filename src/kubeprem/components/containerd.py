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
    """containerd's config.toml (config version 2: containerd 1.6 and 1.7)."""
    feats = features(ctx.site)
    if feats.containerd_config_version != 2:
        raise ValueError(
            f"containerd config version {feats.containerd_config_version} is not rendered "
            "by kubeprem yet; only version 2 (containerd 1.6/1.7) is"
        )
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    runc = f"{cri}.containerd.runtimes.runc"
    systemd_cgroup = "true" if cgroup_driver(ctx.options) == "systemd" else "false"
    lines = [
        "# Rendered by kubeprem; changes here are overwritten.",
        "version = 2",
        'root = "/var/lib/containerd"',
        'state = "/run/containerd"',
        "",
        "[grpc]",
        f'  address = "{SOCKET}"',
        "",
        f"[{cri}]",
        f'  sandbox_image = "{feats.pause_image}"',
    ]
    if ctx.options.in_container:
        # Lab only (LAB-NOTES.md): the nspawn machine lacks CAP_SYS_RESOURCE,
        # so runc cannot lower oom_score_adj and every pod sandbox fails.
        lines.append("  restrict_oom_score_adj = true")
    lines += [
        "",
        f"[{cri}.containerd]",
        '  default_runtime_name = "runc"',
        "",
        f"[{runc}]",
        '  runtime_type = "io.containerd.runc.v2"',
        "",
        f"[{runc}.options]",
        f'  BinaryName = "{RUNC}"',
        f"  SystemdCgroup = {systemd_cgroup}",
        "",
        f"[{cri}.cni]",
        f'  bin_dir = "{CNI_BIN_DIR}"',
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

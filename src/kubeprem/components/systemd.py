"""systemd unit files for the services kubeprem runs, from argument lists.

Every component renders its unit through ``unit()`` so that quoting and
restart policy are decided once. Arguments are quoted for systemd's
ExecStart syntax (which is not a shell): values containing spaces, quotes
or backslashes are double-quoted with escapes; ``$`` and ``%`` are doubled so
systemd takes them literally.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kubeprem.components.paths import UNIT_DIR


def quote_arg(arg: str) -> str:
    """One ExecStart argument, literal to systemd."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and not any(c in escaped for c in " \t\"'\\;"):
        return escaped
    escaped = escaped.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def exec_line(argv: Sequence[str]) -> str:
    """ExecStart value: the binary, then one flag per continued line."""
    parts = [quote_arg(a) for a in argv]
    if len(parts) <= 2:
        return " ".join(parts)
    return " \\\n  ".join(parts)


def unit(
    name: str,
    description: str,
    argv: Sequence[str],
    *,
    documentation: str | None = None,
    after: Sequence[str] = ("network-online.target",),
    wants: Sequence[str] = ("network-online.target",),
    requires: Sequence[str] = (),
    service_type: str = "simple",
    environment: Mapping[str, str] | None = None,
    restart: str = "always",
    restart_sec: int = 5,
    limit_nofile: int | None = 65536,
    extra_service: Sequence[str] = (),
    exec_start_pre: Sequence[Sequence[str]] = (),
) -> tuple[str, str]:
    """(path, text) of a unit file ``/etc/systemd/system/<name>``."""
    lines = ["[Unit]", f"Description={description}"]
    if documentation:
        lines.append(f"Documentation={documentation}")
    if wants:
        lines.append("Wants=" + " ".join(wants))
    if after:
        lines.append("After=" + " ".join(after))
    if requires:
        lines.append("Requires=" + " ".join(requires))
    lines += ["", "[Service]", f"Type={service_type}"]
    for key, value in (environment or {}).items():
        lines.append(f"Environment={quote_arg(f'{key}={value}')}")
    for pre in exec_start_pre:
        lines.append("ExecStartPre=" + exec_line(pre))
    lines.append("ExecStart=" + exec_line(argv))
    if service_type != "oneshot":
        lines += [f"Restart={restart}", f"RestartSec={restart_sec}"]
    if limit_nofile is not None:
        lines.append(f"LimitNOFILE={limit_nofile}")
    lines += list(extra_service)
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return f"{UNIT_DIR}/{name}", "\n".join(lines)


def flags(pairs: Mapping[str, str | int | bool | None]) -> list[str]:
    """``--key=value`` arguments in the given order; ``None`` values are left out.

    Booleans render as ``true``/``false`` (Kubernetes and etcd spell them so).
    """
    out = []
    for key, value in pairs.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out.append(f"--{key}={value}")
    return out

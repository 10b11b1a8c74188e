"""A real OpenSSH server on 127.0.0.1 for transport tests (no machine needed)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass(frozen=True)
class Sshd:
    port: int
    client_key: Path
    known_hosts: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_sshd(tmp: Path) -> Iterator[Sshd]:
    if not Path(SSHD).exists():
        raise RuntimeError("sshd is not installed (Debian package openssh-server)")
    os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory
    host_key = tmp / "host_ed25519"
    client_key = tmp / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    auth = tmp / "authorized_keys"
    auth.write_text(client_key.with_suffix(".pub").read_text())
    auth.chmod(0o600)
    port = free_port()
    known = tmp / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} " + host_key.with_suffix(".pub").read_text())
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {auth}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n"
        f"PidFile {tmp}/sshd.pid\nSubsystem sftp internal-sftp\nUsePAM no\nMaxSessions 10\n"
    )
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise RuntimeError(
                    f"sshd exited: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            time.sleep(0.05)
        yield Sshd(port, client_key, known)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

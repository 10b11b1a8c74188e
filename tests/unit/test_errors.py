"""Remote errors name the host, the step, the command and what went wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeprem.errors import RemoteError


def test_a_command_that_exited_shows_its_status_and_the_end_of_stderr() -> None:
    err = RemoteError("worker-0", "start kubelet", ["systemctl", "start", "kubelet"], 1, "a\nb\n")
    assert (
        str(err) == "worker-0: start kubelet: `systemctl start kubelet` exited with status 1: a | b"
    )


def test_a_write_or_command_that_never_finished_says_failed_not_status_none() -> None:
    err = RemoteError(
        "worker-1",
        "create /usr/local/bin/kubelet",
        ["sftp-put", "/usr/local/bin/kubelet"],
        None,
        "SFTPFailure: No space left on device",
    )
    assert str(err) == (
        "worker-1: create /usr/local/bin/kubelet: `sftp-put /usr/local/bin/kubelet` failed: "
        "SFTPFailure: No space left on device"
    )


def test_sigterm_runs_the_cleanups_then_ends_the_process_as_sigterm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A SIGTERM mid-command unwinds it (finally blocks run: a build kills its
    compilers, a lock is released), then is delivered again to the handler
    that was there before, so the process still ends as SIGTERM ends it."""
    import signal

    from kubeprem.artifacts import cache as art
    from kubeprem.cli import main as cli_main
    from kubeprem.site import example_text

    site = tmp_path / "site.yaml"
    site.write_text(example_text())
    cleaned: list[str] = []
    delivered: list[int] = []

    def killed_mid_way(*_a: object, **_k: object) -> None:
        try:
            signal.raise_signal(signal.SIGTERM)
            raise AssertionError("SIGTERM did not stop the command")
        finally:
            cleaned.append("cleanup ran")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(art, "ensure_artifacts", killed_mid_way)
    monkeypatch.setattr("kubeprem.cli.artifacts_cmds.ensure_artifacts", killed_mid_way)
    monkeypatch.setattr(cli_main.os, "kill", lambda pid, sig: delivered.append(sig))
    assert cli_main.main(["artifacts", str(site)]) == 143
    assert cleaned == ["cleanup ran"]
    assert delivered == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) == before  # the caller's handler is back

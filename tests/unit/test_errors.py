"""Remote errors name the host, the step, the command and what went wrong."""

from __future__ import annotations

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

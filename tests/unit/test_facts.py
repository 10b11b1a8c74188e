"""Facts: the constant script, the parser on captured outputs, the real
script run locally with sh, and the fake host's answers."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kubeprem.errors import OperationError
from kubeprem.plan.facts import (
    READ_SCRIPT,
    SCRIPT,
    FileFacts,
    Listener,
    ServiceFacts,
    Swap,
    facts_command,
    file_facts_command,
    gather_contents,
    gather_facts,
    parse_contents,
    parse_facts,
    parse_proc_net_tcp,
    parse_ss,
    read_command,
)
from kubeprem.transport.fake import FakeFile, FakeTransport

FIXTURES = Path(__file__).parents[1] / "fixtures" / "facts"

HOSTNAME_SHA = "427f93cafd9cc19be6eec03e590c9c6cdf9f688a5eaf21fa8d72351e2b15fd05"
FIXTURE_FILES = {
    "/etc/hostname": FileFacts(HOSTNAME_SHA, 0o755, "root", "root", "regular file"),
    "/etc/os-release": FileFacts(
        "59a77b5f2666d9c85c489bd1911a6eebbd91ef22fe48b90a3b75f1b21f3844d4",
        0o777,
        "root",
        "root",
        "symbolic link",
    ),
    "/etc/shadow": FileFacts(
        "2d8fcdcc41e885800b77656c338924b7147314d9440eb4f746b4c2c99c1b9ba0",
        0o640,
        "root",
        "shadow",
        "regular file",
    ),
    "/etc/ssh": FileFacts(None, 0o755, "root", "root", "directory"),
    "/etc/kubernetes/pki/ca.crt": None,
}
UNKNOWN = ServiceFacts("unknown", "unknown")

# fixture -> expected attributes of the parsed HostFacts
CASES: dict[str, dict[str, Any]] = {
    "debian12-container-full.txt": {
        "os_id": "debian",
        "os_version": "12",
        "arch": "x86_64",
        "pid1": "process_api",
        "systemd": False,
        "systemd_version": 252,
        "container": "docker",
        "vm": "kvm",
        "swaps": (),
        "listeners": (Listener("0.0.0.0", 2024),),
        "kernel.bridge": True,
        "kernel.br_netfilter": False,
        "kernel.overlay": True,
        "kernel.ip_forward": False,
        "kernel.cgroup_v1": None,  # captured before the cgroupfs line existed
        "files": FIXTURE_FILES,
        "services": {
            "ssh.service": ServiceFacts("enabled", "unknown"),
            "cron.service": UNKNOWN,
            "kubelet.service": UNKNOWN,
        },
    },
    "debian12-no-systemd-tools.txt": {
        "os_id": "debian",
        "systemd": False,
        "systemd_version": None,
        "container": None,
        "vm": None,
        "listeners": (Listener("0.0.0.0", 2024),),  # from /proc/net/tcp, no ss
        "files": FIXTURE_FILES,
        "services": {s: UNKNOWN for s in ("ssh.service", "cron.service", "kubelet.service")},
    },
    "debian12-files-only.txt": {
        "os_id": None,
        "arch": None,
        "listeners": None,
        "files": FIXTURE_FILES,
        "services": {},
    },
    "synthetic-nspawn-booted.txt": {
        "arch": "aarch64",
        "pid1": "systemd",
        "systemd": True,
        "container": "systemd-nspawn",
        "vm": None,
        "clock.host": 1700000100.0,
        "swaps": (Swap("/swapfile", "file", 1048572, 512),),
        "listeners": (
            Listener("0.0.0.0", 22),
            Listener("::", 22),
            Listener("10.240.0.11", 2379),
            Listener("127.0.0.1", 2379),
            Listener("*", 6443),
        ),
        "kernel.bridge": False,
        "kernel.ip_forward": True,
        "kernel.overlay_module": False,
        "kernel.br_netfilter_module": None,  # "?": no modinfo
        "kernel.cgroupfs": "tmpfs",
        "kernel.cgroup_v1": True,
        "files": {
            "/etc/systemd/system/etcd.service": FileFacts(
                "4f0c3e6a9d1b2c7e8f00112233445566778899aabbccddeeff00112233445566",
                0o644,
                "root",
                "root",
            ),
            "/etc/kubernetes/pki/etcd/server.key": FileFacts(None, 0o600, "etcd", "etcd"),
            "/etc/kubernetes/pki/etcd/ca.crt": None,
        },
        "services": {
            "etcd.service": ServiceFacts("enabled", "activating"),
            "kubelet.service": ServiceFacts("not-found", "inactive"),
        },
    },
}


def _get(obj: object, dotted: str) -> object:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_parse_captured_output(fixture: str) -> None:
    facts = parse_facts("h", (FIXTURES / fixture).read_text())
    for attr, expected in CASES[fixture].items():
        got = _get(facts, attr)
        if attr in ("files", "services"):
            got = dict(got)  # type: ignore[call-overload]
        assert got == expected, attr


def test_nspawn_facts_drive_render_options_and_preflight_views() -> None:
    facts = parse_facts("h", (FIXTURES / "synthetic-nspawn-booted.txt").read_text())
    assert facts.in_container and facts.render_options().in_container
    assert facts.swap_in_use
    assert facts.listening_ports() == {22, 2379, 6443}


def test_the_script_is_constant_and_values_travel_as_arguments() -> None:
    nasty = "/etc/x; rm -rf / $(reboot) `id` 'q\""
    argv = facts_command([nasty, "/etc/y"], ["etcd.service"])
    assert argv[:4] == ["sh", "-c", SCRIPT, "kubeprem-facts"]
    assert argv[4:] == ["full", nasty, "/etc/y", "--", "etcd.service"]
    assert nasty not in SCRIPT
    assert file_facts_command(["/a"]) == ["sh", "-c", SCRIPT, "kubeprem-facts", "files", "/a", "--"]
    assert read_command(["/a"], 10) == ["sh", "-c", READ_SCRIPT, "kubeprem-read", "10", "/a"]


@pytest.mark.parametrize(
    ("paths", "services"),
    [(["relative/path"], []), (["/a\nb"], []), (["--"], []), ([], ["-x"]), ([], ["a b"])],
)
def test_bad_paths_and_units_are_refused(paths: list[str], services: list[str]) -> None:
    with pytest.raises(ValueError):
        facts_command(paths, services)


@pytest.mark.parametrize(
    "output",
    [
        "",
        "something else\n",
        "@@kubeprem facts 2\n@@kubeprem end\n",
        "@@kubeprem facts 1\n@@kubeprem os\nID=x\n",
    ],
    ids=["empty", "foreign", "other version", "cut short"],
)
def test_output_that_is_not_whole_facts_is_an_error(output: str) -> None:
    with pytest.raises(OperationError, match="h: facts output"):
        parse_facts("h", output)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("LISTEN 0 4096 127.0.0.1:2379 0.0.0.0:*", Listener("127.0.0.1", 2379)),
        ("LISTEN 0 128 [::]:22 [::]:*", Listener("::", 22)),
        ("LISTEN 0 4096 [fe80::1%eth0]:10250 [::]:*", Listener("fe80::1%eth0", 10250)),
        ("LISTEN 0 4096 *:6443 *:*", Listener("*", 6443)),
        ("LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:*", Listener("127.0.0.53%lo", 53)),
        ("ESTAB 0 0 10.0.0.1:22 10.0.0.2:5555", None),
        ("garbage", None),
    ],
)
def test_ss_lines(line: str, expected: Listener | None) -> None:
    assert parse_ss([line]) == ((expected,) if expected else ())


def test_proc_net_tcp_lines() -> None:
    lines = [
        "  sl  local_address rem_address   st tx_queue",
        "   0: 0100007F:0958 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
        "   1: 0100007F:AD51 0100007F:8C98 06 00000000:00000000 03:00001237 00000000 0 0 0",
        "   2: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A x",
    ]
    assert parse_proc_net_tcp(lines) == (Listener("127.0.0.1", 2392), Listener("*", 22))


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
def test_real_script_on_this_machine(tmp_path: Path) -> None:
    """The script as a host runs it (sh -c, arguments with spaces and quotes)."""
    odd = tmp_path / "with space 'and' quotes;$(x)"
    odd.write_bytes(b"hello\n")
    odd.chmod(0o640)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    argv = facts_command(
        [str(odd), str(empty), str(tmp_path / "missing")], ["kubeprem-test.service"]
    )
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout
    facts = parse_facts("local", out)
    assert facts.files[str(odd)] == FileFacts(
        hashlib.sha256(b"hello\n").hexdigest(), 0o640, *_owner(odd), "regular file"
    )
    e = facts.files[str(empty)]
    assert e is not None and e.kind == "regular empty file" and e.regular
    assert facts.files[str(tmp_path / "missing")] is None
    assert facts.arch and facts.os_id and facts.clock.host
    assert "kubeprem-test.service" in facts.services
    read = subprocess.run(
        read_command([str(odd), str(empty)], 100), capture_output=True, text=True, check=True
    ).stdout
    assert parse_contents("local", read) == {str(odd): "hello\n", str(empty): ""}


def test_read_script_follows_no_symlink_and_reads_nothing_without_base64(
    tmp_path: Path,
) -> None:
    text = tmp_path / "haproxy.cfg"
    text.write_text("global\n")
    secret = tmp_path / "ca.key"
    secret.write_text("-----BEGIN PRIVATE KEY-----\n")
    link = tmp_path / "link.cfg"
    link.symlink_to(secret)
    argv = read_command([str(text), str(link)], 100)
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout
    assert f"@@kubeprem content-symlink {link}" in out
    assert parse_contents("local", out) == {str(text): "global\n"}

    # a PATH with sh's helpers but no base64: no section may read as empty
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("wc", "printf"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    sh = shutil.which("sh")
    assert sh is not None
    out = subprocess.run(
        [sh, *argv[1:]],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={"PATH": str(bin_dir)},
    ).stdout
    assert f"@@kubeprem content-unreadable {text}" in out
    assert parse_contents("local", out) == {}


def _owner(path: Path) -> tuple[str, str]:
    return path.owner(), path.group()


def test_read_fixture_skips_missing_and_too_large() -> None:
    texts = parse_contents("h", (FIXTURES / "debian12-read.txt").read_text())
    assert texts == {"/etc/hostname": "vm\n"}


def test_fake_host_answers_in_the_same_format() -> None:
    fake = FakeTransport(
        "c1",
        container="systemd-nspawn",
        swaps=[("/dev/sda2", 1000, 10)],
        listeners=[("127.0.0.1", 2379)],
        has_ss=False,
        clock=lambda: 1000.5,
    )
    fake.files["/etc/a"] = FakeFile(b"x", 0o600, "etcd", "etcd")
    fake.files["/etc/systemd/system/etcd.service"] = FakeFile(b"[Service]\n")
    ticks = iter([1000.0, 1000.2])
    facts = asyncio.run(
        gather_facts(
            fake, ["/etc/a", "/etc/b"], ["etcd.service", "nope.service"], clock=lambda: next(ticks)
        )
    )
    assert facts.files == {
        "/etc/a": FileFacts(hashlib.sha256(b"x").hexdigest(), 0o600, "etcd", "etcd"),
        "/etc/b": None,
    }
    assert facts.services == {
        "etcd.service": ServiceFacts("disabled", "inactive"),
        "nope.service": ServiceFacts("not-found", "inactive"),
    }
    assert facts.in_container and facts.swap_in_use and facts.systemd
    assert facts.listeners == (Listener("127.0.0.1", 2379),)
    assert facts.clock.offset == pytest.approx(0.4)
    assert facts.clock.uncertainty == pytest.approx(0.1)
    assert asyncio.run(gather_contents(fake, ["/etc/a", "/etc/b"])) == {"/etc/a": "x"}


def test_binary_previews_are_left_out() -> None:
    fake = FakeTransport("h")
    fake.files["/bin/x"] = FakeFile(b"\xff\xfe\x00binary")
    assert asyncio.run(gather_contents(fake, ["/bin/x"])) == {}


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
def test_digest_cache_is_used_and_never_hides_a_change(tmp_path: Path) -> None:
    """Big binaries are hashed once; a changed file is always hashed again."""
    import os
    import time

    state = tmp_path / "state"
    f = tmp_path / "binary"
    f.write_bytes(b"a" * 1000)
    old = time.time() - 10
    os.utime(f, (old, old))  # mtime; the ctime is now, so not cached yet
    env = dict(os.environ, KUBEPREM_STATE_DIR=str(state))

    def digest() -> str | None:
        out = subprocess.run(
            file_facts_command([str(f)]), capture_output=True, text=True, check=True, env=env
        ).stdout
        facts = parse_facts("local", out)
        ff = facts.files[str(f)]
        return ff.sha256 if ff else None

    assert digest() == hashlib.sha256(b"a" * 1000).hexdigest()
    assert not (state / "digests").read_text().strip()  # ctime too recent to cache
    time.sleep(2.1)
    digest()
    cached = (state / "digests").read_text()
    assert str(f) in cached
    # a forged cache entry with the file's current stat key is believed ...
    key = cached.split("\t")[0]
    (state / "digests").write_text(f"{key}\t{'f' * 64}\t{f}\n")
    assert digest() == "f" * 64
    # ... but any change to the file changes its key, so it is hashed again
    f.write_bytes(b"b" * 1000)
    assert digest() == hashlib.sha256(b"b" * 1000).hexdigest()


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
def test_digest_cache_keeps_paths_not_asked_about(tmp_path: Path) -> None:
    """A drift check asks for a few files; the others' entries stay cached."""
    import os
    import time

    state = tmp_path / "state"
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    env = dict(os.environ, KUBEPREM_STATE_DIR=str(state))

    def facts_of(*paths: Path) -> None:
        subprocess.run(
            file_facts_command([str(p) for p in paths]), capture_output=True, check=True, env=env
        )

    time.sleep(2.1)  # old enough to be cached
    facts_of(a, b)
    facts_of(b)
    lines = (state / "digests").read_text().splitlines()
    assert sorted(line.split("\t")[2] for line in lines) == [str(a), str(b)]


@pytest.mark.parametrize(
    ("line", "v1"), [("cgroupfs cgroup2fs", False), ("cgroupfs tmpfs", True), ("cgroupfs ", None)]
)
def test_cgroup_version_reaches_the_render_options(line: str, v1: bool | None) -> None:
    out = "@@kubeprem facts 1\n@@kubeprem kernel\n" + line + "\n@@kubeprem end\n"
    facts = parse_facts("w", out)
    assert facts.kernel.cgroup_v1 is v1
    assert facts.render_options().cgroup_v1 is bool(v1)

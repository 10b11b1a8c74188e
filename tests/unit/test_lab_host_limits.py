"""The lab raises the host's inotify limits, and never lowers them."""

from __future__ import annotations

from pathlib import Path

from kubeprem.lab.host import INOTIFY_MINIMUMS, raise_inotify_limits


def test_raises_low_limits_and_keeps_high_ones(tmp_path: Path) -> None:
    (tmp_path / "fs/inotify").mkdir(parents=True)
    (tmp_path / "fs/inotify/max_user_instances").write_text("128\n")
    (tmp_path / "fs/inotify/max_user_watches").write_text("9999999\n")
    raised = raise_inotify_limits(tmp_path)
    assert raised == {"fs/inotify/max_user_instances": 1024}
    assert (tmp_path / "fs/inotify/max_user_instances").read_text() == "1024\n"
    assert (tmp_path / "fs/inotify/max_user_watches").read_text() == "9999999\n"
    assert raise_inotify_limits(tmp_path) == {}
    assert set(INOTIFY_MINIMUMS) == set(raised) | {"fs/inotify/max_user_watches"}

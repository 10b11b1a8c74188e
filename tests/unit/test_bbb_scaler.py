"""The scaler's pure decision, table-driven, and the API's checksum and XML parsing."""

from __future__ import annotations

import hashlib

import pytest

from kubeprem.apps.bigbluebutton.api import BBBAPIError, checksum, parse_meetings, signed_url
from kubeprem.apps.bigbluebutton.scaler import Action, ServerLoad, decide
from kubeprem.apps.bigbluebutton.values import ScalerV
from kubeprem.sensitive import Sensitive

P = ScalerV(users_per_server=100, scale_up_at=0.8, scale_down_at=0.3, min_servers=1)


def L(
    name: str, state: str = "enabled", users: int = 0, meetings: int = 0, online: bool = True
) -> ServerLoad:
    return ServerLoad(name, state, online, meetings, users)  # type: ignore[arg-type]


CASES: dict[str, tuple[list[ServerLoad], list[tuple[str, str]]]] = {
    "steady": ([L("a", users=50, meetings=3), L("b", users=40, meetings=2)], []),
    "hot: enable an idle server": (
        [L("a", users=90, meetings=5), L("b", "disabled")],
        [("enable", "b")],
    ),
    "hot: a cordoned, running server comes back first": (
        [L("a", users=90, meetings=5), L("b", "cordoned", users=5, meetings=1), L("c", "disabled")],
        [("enable", "b")],
    ),
    "hot: nothing left, ask for a machine": ([L("a", users=95, meetings=9)], [("need-server", "")]),
    "a disabled server with meetings is not idle": (
        [L("a", users=95, meetings=9), L("b", "disabled", users=3, meetings=1)],
        [("need-server", "")],
    ),
    "cold: cordon the emptiest": (
        [L("a", users=20, meetings=2), L("b", users=5, meetings=1), L("c", users=10, meetings=1)],
        [("cordon", "b")],
    ),
    "never cordon the last server": ([L("a", users=0)], []),
    "drained when its last meeting ended": (
        [L("a", users=30, meetings=3), L("b", "cordoned", meetings=0)],
        [("drained", "b")],
    ),
    "still draining while a meeting runs": (
        [L("a", users=30, meetings=3), L("b", "cordoned", users=2, meetings=1)],
        [],
    ),
    "offline is reported, not counted": (
        [L("a", users=85, meetings=2), L("b", online=False), L("c", "disabled")],
        [("offline", "b"), ("enable", "c")],
    ),
    "below min_servers": ([L("a", "disabled")], [("enable", "a")]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_decide(case: str) -> None:
    loads, want = CASES[case]
    got = decide(loads, P)
    assert [(a.kind, a.server) for a in got] == want
    assert all(isinstance(a, Action) and a.reason for a in got)


def test_decide_never_stops_a_server_with_meetings() -> None:
    import itertools

    states = ("enabled", "cordoned", "disabled")
    for combo in itertools.product(states, repeat=3):
        for users in (0, 10, 95):
            loads = [
                L(n, st, users=users, meetings=1 if users else 0)
                for n, st in zip("abc", combo, strict=True)
            ]
            for a in decide(loads, P):
                load = next((x for x in loads if x.name == a.server), None)
                if a.kind == "drained":
                    assert load is not None and load.meetings == 0
                assert a.kind in ("enable", "cordon", "drained", "need-server", "offline")


def test_checksum_is_sha1_of_call_query_and_secret() -> None:
    q = "name=Test+Meeting&meetingID=abc123"
    assert (
        checksum("create", q, "s3cr3t")
        == hashlib.sha1(b"create" + q.encode() + b"s3cr3t").hexdigest()
    )
    assert len(checksum("create", q, "s", "sha256")) == 64
    url = signed_url(
        "https://h/bigbluebutton/api/",
        "create",
        {"name": "Test Meeting", "meetingID": "abc123"},
        Sensitive("s3cr3t"),
    )
    assert (
        url == f"https://h/bigbluebutton/api/create?{q}&checksum={checksum('create', q, 's3cr3t')}"
    )
    assert signed_url("https://h/bigbluebutton/api", "getMeetings", {}, Sensitive("x")).endswith(
        "getMeetings?checksum=" + hashlib.sha1(b"getMeetingsx").hexdigest()
    )


def test_parse_meetings() -> None:
    empty = (
        "<response><returncode>SUCCESS</returncode><meetings/><messageKey>noMeetings</messageKey>"
        "<message>no meetings were found on this server</message></response>"
    )
    assert parse_meetings(empty) == []
    one = (
        "<response><returncode>SUCCESS</returncode><meetings><meeting><meetingID>m1</meetingID>"
        "<running>true</running><participantCount>7</participantCount><videoCount>2</videoCount>"
        "<isBreakout>false</isBreakout></meeting></meetings></response>"
    )
    [m] = parse_meetings(one)
    assert (m.meeting_id, m.participants, m.video, m.running) == ("m1", 7, 2, True)
    with pytest.raises(BBBAPIError, match="checksumError"):
        parse_meetings(
            "<response><returncode>FAILED</returncode><messageKey>checksumError</messageKey>"
            "<message>You did not pass the checksum security check</message></response>"
        )

"""BigBlueButton against real programs on loopback.

1. The scaler against ``tests.fakes.bbb_api.FakeBBB`` (real HTTP on
   127.0.0.1, bbb-web's checksum rule): signed calls pass, forged ones are
   refused, load is read with getMeetings, a server is cordoned and reported
   drained only once its last meeting has ended.
2. Every BigBlueButton manifest passes a server-side dry run on a real
   kube-apiserver 1.20 (etcd x3 + kube-apiserver from the artifact cache,
   the fixture of test_apps_api).

BigBlueButton's own images are not run: they cannot be pulled here.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.request import urlopen

import pytest

from kubeprem.apps import workflow
from kubeprem.apps.bigbluebutton.api import get_meetings, http_fetch, signed_url
from kubeprem.apps.bigbluebutton.scaler import Endpoint, State, reconcile
from kubeprem.apps.bigbluebutton.values import ScalerV
from kubeprem.apps.catalog import APPS
from kubeprem.images import image_refs
from kubeprem.kube import HttpKubeAPI, apply_order
from kubeprem.sensitive import Sensitive
from tests.fakes.bbb_api import FakeBBB
from tests.integration.test_apps_api import Counting, api  # noqa: F401 - the apiserver fixture

pytestmark = pytest.mark.integration


@pytest.fixture
def servers() -> Iterator[dict[str, FakeBBB]]:
    fakes = {n: FakeBBB(secret=f"secret-of-{n}").start() for n in ("a", "b", "c")}
    yield fakes
    for f in fakes.values():
        f.stop()


def call(fake: FakeBBB, api_call: str, /, **params: str) -> str:
    with urlopen(signed_url(fake.url, api_call, params, Sensitive(fake.secret))) as r:
        return str(r.read().decode())


def test_the_double_checks_checksums_like_bbb_web(servers: dict[str, FakeBBB]) -> None:
    a = servers["a"]
    assert "SUCCESS" in call(a, "create", name="Lecture 1", meetingID="lec-1")
    for algo in ("sha256", "sha512"):
        url = signed_url(
            a.url, "isMeetingRunning", {"meetingID": "lec-1"}, Sensitive(a.secret), algo
        )
        assert "<running>true</running>" in urlopen(url).read().decode()
    forged = signed_url(a.url, "end", {"meetingID": "lec-1"}, Sensitive("wrong"))
    assert "checksumError" in urlopen(forged).read().decode()
    tampered = signed_url(a.url, "end", {"meetingID": "lec-1"}, Sensitive(a.secret))
    assert "checksumError" in urlopen(tampered.replace("lec-1", "lec-2")).read().decode()
    unsigned = a.url + "/getMeetings"
    assert "checksumError" in urlopen(unsigned).read().decode()
    assert "SUCCESS" in urlopen(a.url).read().decode()  # the bare API path needs none
    assert a.meetings.keys() == {"lec-1"}


class Control:
    """Scalelite's server states, in memory (the real one runs its rake tasks)."""

    def __init__(self, states: dict[str, State]) -> None:
        self.s = states
        self.log: list[str] = []

    def states(self) -> dict[str, State]:
        return dict(self.s)

    def cordon(self, server: str) -> None:
        self.s[server] = "cordoned"
        self.log.append(f"cordon {server}")

    def enable(self, server: str) -> None:
        self.s[server] = "enabled"
        self.log.append(f"enable {server}")


def test_scaler_reads_load_scales_up_and_drains_without_cutting_meetings(
    servers: dict[str, FakeBBB],
) -> None:
    fetch = http_fetch(timeout=5)
    eps = [Endpoint(n, f.url, Sensitive(f.secret)) for n, f in servers.items()]
    policy = ScalerV(users_per_server=100, scale_up_at=0.8, scale_down_at=0.3, min_servers=1)
    control = Control({"a": "enabled", "b": "enabled", "c": "disabled"})
    a, b = servers["a"], servers["b"]
    call(a, "create", name="Big", meetingID="big")
    a.join_users("big", 90)
    call(b, "create", name="Seminar", meetingID="sem")
    b.join_users("sem", 80)
    assert [m.participants for m in get_meetings(a.url, Sensitive(a.secret), fetch)] == [90]

    # 170 users on 2 servers of 100: above 80 % -> enable c
    acts = reconcile(eps, policy, control, fetch)
    assert [(x.kind, x.server) for x in acts] == [("enable", "c")]

    # the big lecture ends: 80 users fit on 2 servers below 30 %? no (30 % of 200 = 60)
    call(a, "end", meetingID="big")
    assert reconcile(eps, policy, control, fetch) == []
    # the seminar shrinks to 20 users: cordon the emptiest (a: no meeting at all)
    b.meetings["sem"].participants = 20
    acts = reconcile(eps, policy, control, fetch)
    assert [(x.kind, x.server) for x in acts] == [("cordon", "a")]
    # a has no meeting: drained at once; now cordon c or b? 20 users fit on 1 below 30 %
    acts = reconcile(eps, policy, control, fetch)
    assert ("drained", "a") in [(x.kind, x.server) for x in acts]
    assert ("cordon", "c") in [(x.kind, x.server) for x in acts]
    # b keeps its meeting; b is never cordoned while it is the last enabled server
    acts = reconcile(eps, policy, control, fetch)
    assert ("cordon", "b") not in [(x.kind, x.server) for x in acts]
    assert "sem" in b.meetings  # no meeting was ended by the scaler
    ended = [q for f in servers.values() for p, q in f.requests if p.endswith("/end")]
    assert len(ended) == 1  # only the test's own end call


def test_an_offline_server_is_reported(servers: dict[str, FakeBBB]) -> None:
    servers["b"].stop()
    fetch = http_fetch(timeout=2)
    eps = [
        Endpoint(
            n, f.url if n != "b" else "http://127.0.0.1:9/bigbluebutton/api", Sensitive(f.secret)
        )
        for n, f in servers.items()
    ]
    control = Control({"a": "enabled", "b": "enabled", "c": "disabled"})
    acts = reconcile(eps, ScalerV(), control, fetch)
    assert ("offline", "b") in [(x.kind, x.server) for x in acts]


def test_every_bigbluebutton_manifest_passes_a_server_side_dry_run(api: HttpKubeAPI) -> None:  # noqa: F811
    app = APPS["bigbluebutton"]
    values = app.values.model_validate(
        {
            "servers": [
                {"name": "a", "public_ipv4": "198.51.100.10"},
                {"name": "b", "public_ipv4": "198.51.100.11", "enabled": False},
            ]
        }
    )
    rendered = workflow.render(app, values, image_refs(), Counting())  # type: ignore[arg-type]
    namespaces = [o for o in rendered.objects if o["kind"] == "Namespace"]
    assert len(namespaces) == 3
    for ns in namespaces:
        api.apply(ns)
    kinds = set()
    for obj in apply_order(o for o in rendered.objects if o["kind"] != "Namespace"):
        stored = api.apply(obj, dry_run=True)
        assert stored["kind"] == obj["kind"]
        kinds.add(obj["kind"])
    assert {"NetworkPolicy", "StatefulSet", "Job", "PodDisruptionBudget"} <= kinds
    for ns in namespaces:
        api.delete("Namespace", str(ns["metadata"]["name"]))

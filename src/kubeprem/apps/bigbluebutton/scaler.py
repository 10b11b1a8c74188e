"""When to add or drain a BigBlueButton server: a pure decision and the I/O around it.

``decide(loads, policy)`` is pure: the load of every server (its Scalelite
state and what its getMeetings says) in, actions out, each with its reason.
``reconcile`` reads the loads over BigBlueButton's API, decides, and acts
through a ``ScaleliteControl`` (the real one runs Scalelite's rake tasks;
tests use an in-memory one).

Rules, one scale step per round so that a change is seen before the next:

- Capacity counts enabled, online servers: ``users_per_server`` each.
  Load above ``scale_up_at`` of it (or fewer than ``min_servers`` enabled):
  take back a cordoned server (it is running and warm), else enable an idle
  disabled one, else ask the operator for a new one (``need-server``: on
  premises a server is a machine to label, not an API call).
- Load that the enabled servers minus one would hold below
  ``scale_down_at``: cordon the emptiest enabled server. Cordon is
  Scalelite's drain: no new meetings there, running meetings go on.
- A cordoned server whose getMeetings lists no meeting is ``drained``: safe
  to stop. A server with meetings is never stopped, disabled or panicked by
  the scaler (Scalelite's ``disable`` makes running meetings unreachable
  and ``panic`` forgets them: both cut meetings).
- An enabled server that does not answer is reported ``offline`` and left to
  the operator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from kubeprem.apps.bigbluebutton.api import BBBAPIError, Fetch, get_meetings
from kubeprem.apps.bigbluebutton.values import ScalerV
from kubeprem.sensitive import Sensitive

State = Literal["enabled", "cordoned", "disabled"]
ActionKind = Literal["enable", "cordon", "drained", "need-server", "offline"]


@dataclass(frozen=True)
class ServerLoad:
    name: str
    state: State
    online: bool
    meetings: int
    users: int


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    server: str  # "" for need-server
    reason: str


def decide(loads: Sequence[ServerLoad], policy: ScalerV) -> list[Action]:
    actions: list[Action] = []
    for s in sorted(loads, key=lambda x: x.name):
        if s.state == "enabled" and not s.online:
            actions.append(Action("offline", s.name, "enabled but its API does not answer"))
        if s.state == "cordoned" and s.online and s.meetings == 0:
            actions.append(Action("drained", s.name, "cordoned and no meeting left: safe to stop"))
    serving = [s for s in loads if s.state == "enabled" and s.online]
    users = sum(s.users for s in serving)
    per = policy.users_per_server
    capacity = len(serving) * per
    if len(serving) < policy.min_servers or users > policy.scale_up_at * capacity:
        why = (
            f"{users} users on {len(serving)} serving server(s) of {per}: above "
            f"{policy.scale_up_at:.0%}"
            if len(serving) >= policy.min_servers
            else f"{len(serving)} serving server(s), at least {policy.min_servers} wanted"
        )
        warm = [s for s in loads if s.state == "cordoned" and s.online]
        idle = [s for s in loads if s.state == "disabled" and s.online and s.meetings == 0]
        if warm:
            pick = max(warm, key=lambda s: (s.meetings, s.name))
            actions.append(Action("enable", pick.name, f"{why}; it is cordoned and running"))
        elif idle:
            pick = min(idle, key=lambda s: s.name)
            actions.append(Action("enable", pick.name, f"{why}; it is idle"))
        else:
            actions.append(Action("need-server", "", f"{why}; no server left to enable"))
        return actions
    if len(serving) > policy.min_servers and users <= policy.scale_down_at * (
        (len(serving) - 1) * per
    ):
        pick = min(serving, key=lambda s: (s.users, s.meetings, s.name))
        actions.append(
            Action(
                "cordon",
                pick.name,
                f"{users} users fit on {len(serving) - 1} server(s) below "
                f"{policy.scale_down_at:.0%}; its {pick.meetings} meeting(s) run to their end",
            )
        )
    return actions


class ScaleliteControl(Protocol):
    def states(self) -> dict[str, State]: ...
    def cordon(self, server: str) -> None: ...
    def enable(self, server: str) -> None: ...


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str  # https://<host>/bigbluebutton/api
    secret: Sensitive[str]


def read_loads(
    endpoints: Sequence[Endpoint], states: Mapping[str, State], fetch: Fetch
) -> list[ServerLoad]:
    out = []
    for e in endpoints:
        try:
            meetings = get_meetings(e.url, e.secret, fetch)
        except BBBAPIError:
            out.append(ServerLoad(e.name, states.get(e.name, "disabled"), False, 0, 0))
            continue
        out.append(
            ServerLoad(
                e.name,
                states.get(e.name, "disabled"),
                True,
                len(meetings),
                sum(m.participants for m in meetings),
            )
        )
    return out


def reconcile(
    endpoints: Sequence[Endpoint], policy: ScalerV, control: ScaleliteControl, fetch: Fetch
) -> list[Action]:
    """One round: read, decide, act on enable/cordon; report the rest."""
    loads = read_loads(endpoints, control.states(), fetch)
    actions = decide(loads, policy)
    for a in actions:
        if a.kind == "cordon":
            control.cordon(a.server)
        elif a.kind == "enable":
            control.enable(a.server)
    return actions


def rake_argv(action: Literal["cordon", "enable"], server: str) -> list[str]:
    """The command run in a scalelite-api pod for an action (Scalelite's rake tasks)."""
    return ["bin/rake", f"servers:{action}[{server}]"]


__all__ = [
    "Action",
    "Endpoint",
    "ScaleliteControl",
    "ServerLoad",
    "decide",
    "rake_argv",
    "read_loads",
    "reconcile",
]

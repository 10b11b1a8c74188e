"""A BigBlueButton API server for tests: real HTTP on 127.0.0.1, bbb-web's checksum rule.

``FakeBBB(secret)`` serves ``/bigbluebutton/api`` on a free loopback port in
a thread. Like bbb-web it

- answers the bare API path without a checksum (version, SUCCESS);
- cuts ``checksum=<value>`` out of the raw query string (the three string
  replacements bbb-web's GetChecksum makes) and compares it with
  ``<algo>(callName + rest + secret)``, the algorithm chosen by the
  checksum's length (40 sha1, 64 sha256, 96 sha384, 128 sha512) among
  ``algorithms``; a mismatch or a missing checksum is
  ``FAILED/checksumError``;
- supports ``create`` (idempotent for the same meetingID), ``end``,
  ``isMeetingRunning``, ``getMeetingInfo`` and ``getMeetings`` with
  bbb-web's element names (``noMeetings`` when there is none).

Joining needs browsers; ``join_users(meeting_id, n)`` stands in for them.
Every request is recorded in ``requests`` (path and raw query).
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

API = "/bigbluebutton/api"
LENGTHS = {40: "sha1", 64: "sha256", 96: "sha384", 128: "sha512"}


@dataclass
class _Meeting:
    meeting_id: str
    name: str
    internal_id: str
    create_time: int
    voice_bridge: str
    participants: int = 0
    video: int = 0


@dataclass
class FakeBBB:
    secret: str
    algorithms: tuple[str, ...] = ("sha1", "sha256", "sha384", "sha512")
    meetings: dict[str, _Meeting] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakeBBB:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = fake.handle(self.path)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml;charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{API}"

    def join_users(self, meeting_id: str, n: int, video: int = 0) -> None:
        with self._lock:
            m = self.meetings[meeting_id]
            m.participants += n
            m.video += video

    def handle(self, raw_path: str) -> tuple[int, str]:
        parts = urlsplit(raw_path)
        self.requests.append((parts.path, parts.query))
        if parts.path.rstrip("/") == API:
            return 200, _ok("<version>2.0</version><apiVersion>2.0</apiVersion>")
        if not parts.path.startswith(API + "/"):
            return 404, "not found"
        call = parts.path[len(API) + 1 :]
        if not self._checksum_ok(call, parts.query):
            return 200, _failed("checksumError", "You did not pass the checksum security check")
        params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self._lock:
            handler = getattr(self, f"_call_{call}", None)
            if handler is None:
                return 200, _failed("unsupportedRequest", "This request is not supported.")
            result: str = handler(params)
            return 200, result

    def _checksum_ok(self, call: str, query: str) -> bool:
        given = parse_qs(query, keep_blank_values=True).get("checksum", [""])[0]
        if not given:
            return False
        # bbb-web: the query string as sent, without the checksum parameter
        rest = query.replace("&checksum=" + given, "")
        rest = rest.replace("checksum=" + given + "&", "")
        rest = rest.replace("checksum=" + given, "")
        algo = LENGTHS.get(len(given))
        if algo is None or algo not in self.algorithms:
            return False
        return hashlib.new(algo, (call + rest + self.secret).encode()).hexdigest() == given

    def _call_create(self, p: dict[str, str]) -> str:
        mid = p.get("meetingID", "")
        if not mid:
            return _failed(
                "missingParamMeetingID", "You must specify a meeting ID for the meeting."
            )
        m = self.meetings.get(mid)
        key = msg = ""
        if m is None:
            now = int(time.time() * 1000)
            internal = hashlib.sha1(mid.encode()).hexdigest() + f"-{now}"
            m = _Meeting(mid, p.get("name", mid), internal, now, str(70000 + len(self.meetings)))
            self.meetings[mid] = m
        else:
            key = "duplicateWarning"
            msg = "This conference was already in existence and may currently be in progress."
        return _ok(
            f"<meetingID>{escape(m.meeting_id)}</meetingID>"
            f"<internalMeetingID>{m.internal_id}</internalMeetingID>"
            "<parentMeetingID>bbb-none</parentMeetingID>"
            f"<createTime>{m.create_time}</createTime><voiceBridge>{m.voice_bridge}</voiceBridge>"
            "<dialNumber>613-555-1234</dialNumber><hasUserJoined>false</hasUserJoined>"
            "<duration>0</duration><hasBeenForciblyEnded>false</hasBeenForciblyEnded>"
            f"<messageKey>{key}</messageKey><message>{msg}</message>"
        )

    def _call_end(self, p: dict[str, str]) -> str:
        if self.meetings.pop(p.get("meetingID", ""), None) is None:
            return _failed(
                "notFound",
                "We could not find a meeting with that meeting ID - perhaps the meeting "
                "is not yet running?",
            )
        return _ok(
            "<messageKey>sentEndMeetingRequest</messageKey><message>A request to end the "
            "meeting was sent.  Please wait a few seconds, and then use the getMeetingInfo "
            "or isMeetingRunning API calls to verify that it was ended.</message>"
        )

    def _call_isMeetingRunning(self, p: dict[str, str]) -> str:
        running = p.get("meetingID", "") in self.meetings
        return _ok(f"<running>{str(running).lower()}</running>")

    def _call_getMeetingInfo(self, p: dict[str, str]) -> str:
        m = self.meetings.get(p.get("meetingID", ""))
        if m is None:
            return _failed("notFound", "A meeting with that ID does not exist")
        return _ok(_meeting_xml(m, wrap=False))

    def _call_getMeetings(self, p: dict[str, str]) -> str:
        if not self.meetings:
            return _ok(
                "<meetings/><messageKey>noMeetings</messageKey>"
                "<message>no meetings were found on this server</message>"
            )
        return _ok(
            f"<meetings>{''.join(_meeting_xml(m) for m in self.meetings.values())}</meetings>"
        )


def _meeting_xml(m: _Meeting, wrap: bool = True) -> str:
    inner = (
        f"<meetingName>{escape(m.name)}</meetingName><meetingID>{escape(m.meeting_id)}</meetingID>"
        f"<internalMeetingID>{m.internal_id}</internalMeetingID>"
        f"<createTime>{m.create_time}</createTime><createDate>-</createDate>"
        f"<voiceBridge>{m.voice_bridge}</voiceBridge><dialNumber>613-555-1234</dialNumber>"
        "<running>true</running><duration>0</duration>"
        f"<hasUserJoined>{str(m.participants > 0).lower()}</hasUserJoined>"
        "<recording>false</recording><hasBeenForciblyEnded>false</hasBeenForciblyEnded>"
        f"<startTime>{m.create_time}</startTime><endTime>0</endTime>"
        f"<participantCount>{m.participants}</participantCount><listenerCount>0</listenerCount>"
        f"<voiceParticipantCount>0</voiceParticipantCount><videoCount>{m.video}</videoCount>"
        "<maxUsers>0</maxUsers><moderatorCount>0</moderatorCount>"
        "<attendees/><metadata/><isBreakout>false</isBreakout>"
    )
    return f"<meeting>{inner}</meeting>" if wrap else inner


def _ok(inner: str) -> str:
    return f"<response><returncode>SUCCESS</returncode>{inner}</response>"


def _failed(key: str, message: str) -> str:
    return (
        "<response><returncode>FAILED</returncode>"
        f"<messageKey>{key}</messageKey><message>{escape(message)}</message></response>"
    )


__all__ = ["API", "FakeBBB"]

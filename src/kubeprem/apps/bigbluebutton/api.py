"""BigBlueButton's API, the part the scaler reads: signed calls and getMeetings.

Called by ``scaler`` (I/O part) and by the tests' fake server. A call is
``<base>/<callName>?<query>&checksum=<hex>`` where the checksum is
``sha1(callName + query + sharedSecret)`` (sha256, sha384 or sha512 when
the server allows them: bbb-web picks the algorithm by the checksum's
length). bbb-web checks it on the raw query string with the
``checksum=...`` parameter cut out, so the query must be signed exactly as
sent. Answers are XML ``<response><returncode>SUCCESS|FAILED</returncode>``.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from kubeprem.errors import OperationError
from kubeprem.sensitive import Sensitive

ALGORITHMS = {"sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128}


class BBBAPIError(OperationError):
    """A BigBlueButton server refused or did not answer a call."""


def checksum(call: str, query: str, secret: str, algorithm: str = "sha1") -> str:
    return hashlib.new(algorithm, (call + query + secret).encode()).hexdigest()


def signed_url(
    base: str,
    call: str,
    params: Mapping[str, str],
    secret: Sensitive[str],
    algorithm: str = "sha1",
) -> str:
    query = urlencode(list(params.items()))
    sig = checksum(call, query, secret.reveal(), algorithm)
    sep = "&" if query else ""
    return f"{base.rstrip('/')}/{call}?{query}{sep}checksum={sig}"


@dataclass(frozen=True)
class Meeting:
    meeting_id: str
    running: bool
    participants: int
    video: int
    is_breakout: bool


def parse_meetings(xml_text: str) -> list[Meeting]:
    """getMeetings' answer -> meetings; raises BBBAPIError on FAILED."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise BBBAPIError(f"getMeetings: not XML: {exc}") from exc
    code = root.findtext("returncode")
    if code != "SUCCESS":
        raise BBBAPIError(
            f"getMeetings: {code} {root.findtext('messageKey')}: {root.findtext('message')}"
        )
    out = []
    for m in root.iterfind("meetings/meeting"):
        out.append(
            Meeting(
                meeting_id=m.findtext("meetingID") or "",
                running=(m.findtext("running") or "false") == "true",
                participants=int(m.findtext("participantCount") or 0),
                video=int(m.findtext("videoCount") or 0),
                is_breakout=(m.findtext("isBreakout") or "false") == "true",
            )
        )
    return out


Fetch = Callable[[str], str]


def http_fetch(timeout: float = 10.0) -> Fetch:
    def fetch(url: str) -> str:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return str(resp.read().decode("utf-8"))
        except (urllib.error.URLError, OSError) as exc:
            raise BBBAPIError(f"{url.split('?')[0]}: {exc}") from exc

    return fetch


def get_meetings(base: str, secret: Sensitive[str], fetch: Fetch) -> list[Meeting]:
    return parse_meetings(fetch(signed_url(base, "getMeetings", {}, secret)))


__all__ = [
    "ALGORITHMS",
    "BBBAPIError",
    "Fetch",
    "Meeting",
    "checksum",
    "get_meetings",
    "http_fetch",
    "parse_meetings",
    "signed_url",
]

"""Where each BigBlueButton component listens, and which ports the site's firewall opens.

Pure data read by the server builder (host ports, media ranges), by the
``status`` lines of ``kubeprem app status bigbluebutton`` and by the
per-component table of docs/bigbluebutton.md (a unit test keeps the two in
step). A component runs in the node's network only when the media path needs
it: ``HOST_NETWORK`` says why for each of those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kubeprem.apps.bigbluebutton.values import BBBValues

FS_RTP = (16384, 24576)  # FreeSWITCH RTP (BBB.md)
SFU_RTC = (24577, 32768)  # mediasoup WebRTC, also the recorder
TURN_RELAY = (32769, 65535)  # coturn relay
TURN_PORT = 3478
TURN_TLS_PORT = 5349  # 443 is nginx's on the same node
SFU_WS = 3008
FS_SIP_WS = 5066
ESL = 8021


@dataclass(frozen=True)
class Opening:
    proto: Literal["tcp", "udp"]
    ports: tuple[int, int]
    source: Literal["anywhere", "pod network", "this node"]
    why: str

    def text(self) -> str:
        lo, hi = self.ports
        return f"{lo}/{self.proto}" if lo == hi else f"{lo}-{hi}/{self.proto}"


# what the site's firewall must open on every node labelled kubeprem.io/bbb-server
PUBLIC: tuple[Opening, ...] = (
    Opening("tcp", (80, 80), "anywhere", "nginx: HTTP, redirects to HTTPS"),
    Opening("tcp", (443, 443), "anywhere", "nginx: HTTPS, the client and the API"),
    Opening("udp", (FS_RTP[0], SFU_RTC[1]), "anywhere", "media: FreeSWITCH RTP + mediasoup"),
    Opening("udp", (TURN_PORT, TURN_PORT), "anywhere", "coturn: STUN/TURN"),
    Opening("tcp", (TURN_PORT, TURN_PORT), "anywhere", "coturn: TURN over TCP"),
    Opening("tcp", (TURN_TLS_PORT, TURN_TLS_PORT), "anywhere", "coturn: TURN over TLS"),
    Opening("udp", TURN_RELAY, "anywhere", "coturn: relayed media"),
)
# listeners of host-network components that must stay closed to the outside
INTERNAL: tuple[Opening, ...] = (
    Opening("tcp", (SFU_WS, SFU_WS), "pod network", "webrtc-sfu signalling, from nginx"),
    Opening("tcp", (FS_SIP_WS, FS_SIP_WS), "pod network", "FreeSWITCH SIP over WebSocket"),
    Opening("tcp", (ESL, ESL), "this node", "FreeSWITCH event socket (fsesl-akka, webrtc-sfu)"),
)

HOST_NETWORK: dict[str, str] = {
    "freeswitch": "RTP on 16384-24576/udp with the public address written into SDP "
    "(external_rtp_ip), 8192 ports cannot be host ports, and NAT by kube-proxy would "
    "rewrite the address but not the SDP",
    "webrtc-sfu": "mediasoup's ICE candidates name announcedIp and a port of "
    "24577-32768/udp, the browser must reach exactly that address and port",
    "webrtc-recorder": "receives RTP from mediasoup in the same range, on the node's "
    "address mediasoup announces to it",
    "coturn": "relays media on 32769-65535/udp from the address it announces",
    "fsesl-akka": "no media itself: it shares the media pod so that it reaches "
    "FreeSWITCH's event socket (password-protected, full control of calls) from the "
    "node itself, which FreeSWITCH's inbound ACL admits",
}
POD_NETWORK_WHY = (
    "signalling, HTTP and queues only; reached through nginx (host ports 80/443) "
    "or over Redis and PostgreSQL"
)


def firewall_lines(v: BBBValues) -> list[str]:
    """The lines ``kubeprem app status bigbluebutton`` prints."""
    out = ["firewall: open on each BigBlueButton node (from anywhere):"]
    out += [f"    {o.text():<18} {o.why}" for o in PUBLIC]
    out.append("keep closed to the outside (node network listeners of media pods):")
    out += [f"    {o.text():<18} {o.source}: {o.why}" for o in INTERNAL]
    out.append("servers (public address -> node labelled kubeprem.io/bbb-server=<name>):")
    for s in v.servers:
        state = "enabled" if s.enabled else "draining (cordoned in Scalelite)"
        out.append(f"    {s.name:<10} {v.host_of(s):<30} {s.public_ipv4:<16} {state}")
    return out


__all__ = [
    "ESL",
    "FS_RTP",
    "FS_SIP_WS",
    "HOST_NETWORK",
    "INTERNAL",
    "PUBLIC",
    "SFU_RTC",
    "SFU_WS",
    "TURN_PORT",
    "TURN_RELAY",
    "TURN_TLS_PORT",
    "Opening",
    "firewall_lines",
]

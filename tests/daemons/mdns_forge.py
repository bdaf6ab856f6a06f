"""Forged mDNS traffic for the discovery security tests: what an attacker on the LAN (or a local
process) can send, built with zeroconf's own record classes so it is exactly what a peer would send.

Used in-process by the loopback tests and as a script inside a network namespace
(``python mdns_forge.py spoof|query|join ...``, one JSON line on stdout) by the namespace tests.
Every socket here is bound to an explicit address the caller chose (loopback or a namespace's own).
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time
from typing import Any

from zeroconf import DNSIncoming, DNSOutgoing, DNSPointer, DNSQuestion, ServiceInfo

from handoffd.discovery.mdns import SERVICE_TYPE
from handoffd.protocol.versions import RANGE, describe

MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353
_RESPONSE_FLAGS = 0x8400  # QR (a response) + AA (authoritative): what a responder announces with
_TYPE_PTR, _CLASS_IN = 12, 1


def response_packet(
    name: str,
    cluster: str,
    address: str,
    port: int,
    *,
    instance: str | None = None,
    version: str = describe(*RANGE),
    ttl: int | None = None,
) -> bytes:
    """An unsolicited announcement of service ``instance`` (PTR, SRV, TXT, A in one packet)
    saying node ``name`` of ``cluster`` listens at ``address:port``; ``ttl=0`` makes it a goodbye."""
    label = instance or f"{name}-{cluster}"
    info = ServiceInfo(
        SERVICE_TYPE,
        f"{label}.{SERVICE_TYPE}",
        addresses=[socket.inet_aton(address)],
        port=port,
        properties={"name": name, "cluster": cluster, "version": version, "port": str(port)},
        server=f"{label}.local.",
    )
    out = DNSOutgoing(_RESPONSE_FLAGS)
    out.add_answer_at_time(info.dns_pointer(ttl), 0)
    out.add_answer_at_time(info.dns_service(ttl), 0)
    out.add_answer_at_time(info.dns_text(ttl), 0)
    for record in info.dns_addresses(ttl):
        out.add_answer_at_time(record, 0)
    (packet,) = out.packets()
    return packet


def query_packet() -> bytes:
    """A one-shot ("legacy unicast") PTR query for the handoffd service type."""
    out = DNSOutgoing(0)
    out.add_question(DNSQuestion(SERVICE_TYPE, _TYPE_PTR, _CLASS_IN))
    (packet,) = out.packets()
    return packet


def _mdns_socket(source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((source, MDNS_PORT))  # a real responder sends from port 5353
    return sock


def send_response(packet: bytes, source: str, *, to: str | None = None) -> None:
    """Send ``packet`` from ``source``:5353, unicast to ``to``:5353, or multicast out of the
    interface that owns ``source`` when ``to`` is None."""
    with _mdns_socket(source) as sock:
        if to is None:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            sock.sendto(packet, (MDNS_GROUP, MDNS_PORT))
        else:
            sock.sendto(packet, (to, MDNS_PORT))


def query(to: str, wait: float, *, source: str = "0.0.0.0", want: str = "") -> dict[str, Any]:
    """Send a PTR query from an ephemeral port to ``to``:5353; report the first answer naming
    something that contains ``want`` (if one came within ``wait`` seconds): who answered and which
    names it revealed. (Every handoffd node on the same loopback answers a query to the group.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        if to == MDNS_GROUP:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
        sock.sendto(query_packet(), (to, MDNS_PORT))
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            try:
                data, addr = sock.recvfrom(9000)
            except ConnectionRefusedError:  # ICMP port unreachable: nothing listens there
                continue
            answers = DNSIncoming(data, addr).answers()
            names = {r.name for r in answers} | {
                r.alias for r in answers if isinstance(r, DNSPointer)
            }
            if any(want in n for n in names):
                return {
                    "answered": True,
                    "source": addr[0],
                    "port": addr[1],
                    "names": sorted(names),
                }
    return {"answered": False}


class TcpWatch:
    """A TCP listener at the advertised address: did the daemon connect, and what did it send?"""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(8)

    def accepted(self, wait: float) -> dict[str, Any] | None:
        """The first connection within ``wait`` seconds: its peer and first bytes (the ZMTP
        greeting, which names the security mechanism), or None."""
        if not select.select([self.sock], [], [], max(0.0, wait))[0]:
            return None
        conn, peer = self.sock.accept()
        with conn:
            conn.settimeout(1.0)
            data = b""
            try:
                # libzmq sends its signature, then the rest of its greeting (version, mechanism)
                # only after it saw ours: a ZMTP 3 signature and major version.
                conn.sendall(b"\xff" + bytes(8) + b"\x7f\x03")
                while len(data) < 64:
                    chunk = conn.recv(64 - len(data))
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
        return {"peer": peer[0], "greeting": data.hex(), "mechanism": zmtp_mechanism(data)}

    def close(self) -> None:
        self.sock.close()


def zmtp_mechanism(greeting: bytes) -> str:
    """The mechanism field of a ZMTP 3 greeting (bytes 12-31, NUL padded), '' if too short."""
    return greeting[12:32].rstrip(b"\0").decode("ascii", "replace") if len(greeting) >= 32 else ""


def spoof(
    *,
    source: str,
    advertise: str,
    port: int,
    name: str,
    cluster: str,
    to: str | None,
    watch: float,
    every: float = 0.25,
) -> dict[str, Any]:
    """Listen on TCP ``advertise``:``port``, announce it as a peer from ``source`` (repeatedly,
    ``every`` seconds) and report whether anyone connected within ``watch`` seconds."""
    listener = TcpWatch(advertise, port)
    packet = response_packet(name, cluster, advertise, port)
    sent = 0
    try:
        deadline = time.monotonic() + watch
        while (left := deadline - time.monotonic()) > 0:
            send_response(packet, source, to=to)
            sent += 1
            got = listener.accepted(min(every, left))
            if got is not None:
                return {"accepted": True, "sent": sent, **got}
    finally:
        listener.close()
    return {"accepted": False, "sent": sent}


def _join(iface: str) -> None:
    """Join the mDNS group on the interface owning ``iface`` (as avahi would) and stay."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((iface, 0))
        membership = socket.inet_aton(MDNS_GROUP) + socket.inet_aton(iface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        print(json.dumps({"joined": iface}), flush=True)
        while True:
            time.sleep(3600)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mdns_forge")
    sub = parser.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("spoof")
    sp.add_argument("--source", required=True)
    sp.add_argument("--advertise", required=True)
    sp.add_argument("--port", type=int, required=True)
    sp.add_argument("--name", required=True)
    sp.add_argument("--cluster", default="default")
    sp.add_argument("--to", help="unicast to this address (default: multicast)")
    sp.add_argument("--watch", type=float, default=3.0)
    qp = sub.add_parser("query")
    qp.add_argument("--to", required=True)
    qp.add_argument("--source", default="0.0.0.0")
    qp.add_argument("--wait", type=float, default=3.0)
    jp = sub.add_parser("join")
    jp.add_argument("--iface", required=True)
    args = parser.parse_args(argv)
    if args.command == "spoof":
        result = spoof(
            source=args.source,
            advertise=args.advertise,
            port=args.port,
            name=args.name,
            cluster=args.cluster,
            to=args.to,
            watch=args.watch,
        )
    elif args.command == "query":
        result = query(args.to, args.wait, source=args.source)
    else:
        _join(args.iface)
        return 0
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""mDNS discovery with python-zeroconf: announce ourselves, resolve same-cluster peers.

Service ``_handoff._tcp.local.``; TXT carries name, cluster, protocol version and port. zeroconf
only bootstraps: it never notices a crash (a SIGKILLed service stays listed for its TTL), so a
removal is reported as ``PeerGone`` - a hint for SWIM to probe soon, never a death (DESIGN 5).

Network rule: multicast is bound to exactly one interface, the daemon's own host address
(``interfaces=[host]``). zeroconf's default binds every interface and would multicast out of
the machine's LAN card; we refuse anything but a concrete local IPv4 address. On one machine
each node gets its own 127.0.0.N (sharing 127.0.0.1 makes lookups slow and flaky).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import re
import socket
from typing import Any

from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from handoffd.discovery import OnDiscovery, PeerGone, PeerSeen
from handoffd.protocol.versions import RANGE, compatible, describe

log = logging.getLogger("handoffd.discovery")

SERVICE_TYPE = "_handoff._tcp.local."  # type label "_handoff" is 8 bytes (<= 15)
RESOLVE_TIMEOUT_MS = 3000
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


def instance_name(name: str, cluster: str) -> str:
    """A DNS-safe service label unique per (node, cluster), at most 63 bytes."""
    label = _UNSAFE.sub("-", f"{name}-{cluster}").strip("-") or "node"
    if len(label) > 63:  # keep it unique: a digest of the full identity replaces the tail
        digest = hashlib.sha1(f"{name}\0{cluster}".encode()).hexdigest()[:12]
        label = f"{label[:50]}-{digest}"
    return label


def check_mdns_host(host: str) -> ipaddress.IPv4Address:
    """Refuse to bind mDNS anywhere but a concrete IPv4 address of this host (never 'all')."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"mDNS host {host!r} is not an IP address: pass the daemon's own IPv4 --host "
            "(mDNS is bound to exactly that interface)"
        ) from None
    if ip.version != 4:
        raise ValueError(f"mDNS host {host}: only IPv4 works for mDNS here (IPv6 ::1 does not)")
    if ip.is_unspecified or ip.is_multicast:
        raise ValueError(
            f"mDNS host {host}: refusing a wildcard/multicast bind; mDNS binds only the daemon's "
            "own host address"
        )
    if not ip.is_loopback:
        # Binding (no traffic is sent) only succeeds for an address this host owns.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((host, 0))
            except OSError as exc:
                raise ValueError(
                    f"mDNS host {host} is not an address of this machine ({exc.strerror})"
                ) from None
    return ip


class MdnsDiscovery:
    """Announce this node and report same-cluster peers as PeerSeen / PeerGone."""

    def __init__(
        self, name: str, cluster: str, host: str, port: int, on_event: OnDiscovery
    ) -> None:
        check_mdns_host(host)
        if not 0 < port < 65536:
            raise ValueError(f"mDNS: port {port} is not a port number")
        self.name = name
        self.cluster = cluster
        self.host = host
        self.port = port
        self._on_event = on_event
        self._instance = instance_name(name, cluster)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{self._instance}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(host)],
            port=port,
            properties={
                "name": name,
                "cluster": cluster,
                "version": describe(*RANGE),  # the protocol range, "2" or "2-3"
                "port": str(port),
            },
            server=f"{self._instance}.local.",
        )
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._resolving: set[asyncio.Task[None]] = set()
        self._peers: dict[str, str] = {}  # service name -> peer node name (for PeerGone)
        self._warned_versions: set[str] = set()
        self.ignored_other_cluster = 0

    async def start(self) -> None:
        """Register (waiting for the announcements) and start browsing."""
        self._zc = AsyncZeroconf(interfaces=[self.host], ip_version=IPVersion.V4Only)
        try:
            announced = await self._zc.async_register_service(
                self._info, cooperating_responders=True
            )
            await announced  # or the registration (and later the goodbye) is cut short
            self._browser = AsyncServiceBrowser(
                self._zc.zeroconf, [SERVICE_TYPE], handlers=[self._on_change]
            )
        except BaseException:
            await self._zc.async_close()
            self._zc = None
            raise
        log.info("mDNS: %s announced on %s as %s", self.name, self.host, self._instance)

    async def close(self) -> None:
        """Send the goodbye, then close zeroconf (idempotent)."""
        zc, self._zc = self._zc, None
        if zc is None:
            return
        for task in list(self._resolving):
            task.cancel()
        for task in list(self._resolving):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            if self._browser is not None:
                await self._browser.async_cancel()
                self._browser = None
            goodbye = await zc.async_unregister_service(self._info)
            await goodbye
        finally:
            await zc.async_close()

    # ---------------------------------------------------------------------------- browsing

    def _on_change(self, **kwargs: Any) -> None:
        service: str = kwargs["name"]
        change: ServiceStateChange = kwargs["state_change"]
        if service == self._info.name:
            return
        if change is ServiceStateChange.Removed:
            peer = self._peers.pop(service, None)
            if peer is not None:
                self._emit(PeerGone(peer))
            return
        task = asyncio.get_running_loop().create_task(
            self._resolve(kwargs["service_type"], service)
        )
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    async def _resolve(self, service_type: str, service: str) -> None:
        zc = self._zc
        if zc is None:
            return
        info = AsyncServiceInfo(service_type, service)
        if not await info.async_request(zc.zeroconf, RESOLVE_TIMEOUT_MS):
            log.debug("mDNS: %s did not resolve", service)
            return
        txt = {k.decode(): (v or b"").decode(errors="replace") for k, v in info.properties.items()}
        if txt.get("cluster") != self.cluster:
            self.ignored_other_cluster += 1
            return
        peer = txt.get("name")
        if not peer or peer == self.name:
            return
        version = txt.get("version", "")
        if not _compatible_text(version):
            if version not in self._warned_versions:
                self._warned_versions.add(version)
                log.warning(
                    "mDNS: ignoring %s: it speaks protocol %s, this node %s (upgrade handoffd "
                    "on the older one)",
                    peer,
                    version,
                    describe(*RANGE),
                )
            return
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if not addresses or not info.port:
            return
        self._peers[service] = peer
        self._emit(PeerSeen(peer, f"{addresses[0]}:{info.port}"))

    def _emit(self, event: PeerSeen | PeerGone) -> None:
        try:
            self._on_event(event)
        except Exception:  # noqa: BLE001 - a callback bug must not kill zeroconf's handler
            log.exception("mDNS discovery callback failed on %s", event)


def _compatible_text(version: str) -> bool:
    """Whether a TXT ``version`` ("2", or a range "2-3") overlaps our protocol range."""
    lo, _, hi = version.partition("-")
    try:
        return compatible(int(lo), int(hi or lo))
    except ValueError:
        return False

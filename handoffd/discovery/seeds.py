"""Static seeds (``--seed host:port`` / ``HANDOFFD_SEEDS``): joins that work without multicast.

Each seed is announced at start and again every ``retry_interval`` until ``known(address)`` says
membership holds it ALIVE, so a seed that starts later than us is still joined.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Callable, Iterable

from handoffd import envvars
from handoffd.discovery import OnDiscovery, PeerSeen

log = logging.getLogger("handoffd.discovery")

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
ENV_VAR = "HANDOFFD_SEEDS"  # the deprecated HANDOFF_SEEDS is read too (handoffd.envvars)


def parse_seed(value: str) -> str:
    """Validate ``host:port`` (IPv4, ``[IPv6]``, or a host name); returns it normalised."""
    text = value.strip()
    if not text:
        raise ValueError("empty seed: expected HOST:PORT, e.g. 10.0.0.5:7788")
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"seed {value!r}: an IPv6 seed needs a port, as [ADDR]:PORT")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"seed {value!r} has no port: expected HOST:PORT, e.g. {text}:7788")
        if ":" in host:
            raise ValueError(f"seed {value!r}: write IPv6 addresses in brackets, [ADDR]:PORT")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"seed {value!r}: port {port_text!r} is not a number in 1..65535")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
            raise ValueError(
                f"seed {value!r}: {host!r} is neither an IP address nor a host name"
            ) from None
        return f"{host.lower()}:{int(port_text)}"
    shown = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"{shown}:{int(port_text)}"


def parse_seeds(values: Iterable[str] = (), env: str | None = None) -> list[str]:
    """``--seed`` values plus the comma-separated ``HANDOFFD_SEEDS`` (``env`` overrides os.environ)."""
    raw = list(values)
    env_value = (envvars.get("SEEDS") or "") if env is None else env
    raw += [part for part in env_value.split(",") if part.strip()]
    seeds: list[str] = []
    for item in raw:
        seed = parse_seed(item)
        if seed not in seeds:
            seeds.append(seed)
    return seeds


class SeedDiscovery:
    """Emit ``PeerSeen(None, address)`` per seed until membership knows it."""

    def __init__(
        self,
        seeds: Iterable[str],
        on_event: OnDiscovery,
        known: Callable[[str], bool] = lambda address: False,
        retry_interval: float = 1.0,
    ) -> None:
        self.seeds = [parse_seed(s) for s in seeds]
        self._on_event = on_event
        self._known = known
        self.retry_interval = retry_interval
        self._task: asyncio.Task[None] | None = None

    def pending(self) -> list[str]:
        """Seeds membership does not (yet) hold ALIVE."""
        return [s for s in self.seeds if not self._known(s)]

    def announce(self) -> int:
        """Emit PeerSeen for every pending seed now; returns how many."""
        pending = self.pending()
        for address in pending:
            self._on_event(PeerSeen(None, address))
        return len(pending)

    async def start(self) -> None:
        self.announce()
        self._task = asyncio.get_running_loop().create_task(self._retry(), name="seed-discovery")

    async def _retry(self) -> None:
        # Keep retrying even once all are known: a seed that dies and restarts is joined again.
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                self.announce()
            except Exception:  # noqa: BLE001 - a callback bug must not end the retries
                log.exception("seed announcement failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

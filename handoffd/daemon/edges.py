"""The node's edges that talk to the outside world: its ZeroMQ transport (with the key policy) and
its discovery (static seeds, mDNS). Built here so ``node.py`` keeps only the wiring."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from handoffd.config import NodeConfig
from handoffd.transport.base import Transport

log = logging.getLogger("handoffd.node")

# ZeroMQ's reconnect interval to a peer that refused the connection: first retry, then doubling up
# to the cap. A seed that does not listen yet (daemons started together) is joined within one cap
# of it coming up; with ZeroMQ's 0.1 s doubling to 2 s the join came 0.15-0.26 s after the seed was
# up. Only down seeds keep being retried at the cap: dead members' sockets are closed.
PEER_RECONNECT_S = (0.02, 0.1)


def zmq_transport(cfg: NodeConfig) -> tuple[Any, Transport]:
    """(the CURVE keys or None, the node's ZeroMQ transport) for ``cfg``."""
    from handoffd.transport.auth import daemon_curve
    from handoffd.transport.zmq_transport import ZmqTransport

    # The cluster key, else the user's local key (only the user's own clients and daemons hold
    # it); none only with allow_local_users or a keyless --insecure host.
    curve = daemon_curve(
        key_file=cfg.key_file,
        insecure=cfg.insecure,
        allow_local_users=cfg.allow_local_users,
        host=cfg.host,
        runtime_dir=cfg.runtime_dir,
    )
    transport = ZmqTransport(
        cfg.host,
        cfg.port,
        curve=curve,
        limits=cfg.limits,
        reconnect_ivl=PEER_RECONNECT_S[0],
        reconnect_ivl_max=PEER_RECONNECT_S[1],
    )
    return curve, transport


async def start_discovery(
    cfg: NodeConfig,
    name: str,
    address: str,
    on_event: Callable[[Any], None],
    known: Callable[[str], bool],
) -> list[Any]:
    """Start the configured discovery sources; returns them (each has ``stop()``)."""
    from handoffd.discovery.seeds import SeedDiscovery

    started: list[Any] = []
    if cfg.seeds:
        seeds = SeedDiscovery(list(cfg.seeds), on_event, known=known)
        await seeds.start()
        started.append(seeds)
    if cfg.mdns:
        from handoffd.discovery.mdns import MdnsDiscovery, mdns_refusal

        keyed = cfg.key_file is not None
        refusal = mdns_refusal(cfg.host, keyed=keyed)
        if refusal is not None:
            log.warning("node %s: %s", name, refusal)
            return started
        port = int(address.rpartition(":")[2])
        mdns = MdnsDiscovery(name, cfg.cluster, cfg.host, port, on_event, keyed=keyed)
        await mdns.start()
        started.append(mdns)
    return started

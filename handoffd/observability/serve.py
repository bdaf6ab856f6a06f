"""Start a daemon's HTTP port (``handoffd start --http-port``): which address, which token."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from handoffd.observability.cluster import ClusterFetcher
from handoffd.observability.http import HttpServer
from handoffd.observability.snapshot import node_snapshot
from handoffd.observability.tokens import http_token
from handoffd.transport.auth import is_loopback

if TYPE_CHECKING:
    from handoffd.daemon.node import Node

log = logging.getLogger("handoffd.http")


def start_http(
    node: Node, loop: asyncio.AbstractEventLoop, *, optional: bool = False
) -> HttpServer | None:
    """Serve on the daemon's own host. With a key (the cluster's, or the user's local key) every
    request needs the token derived from it; a keyless daemon on a network address (--insecure)
    serves HTTP on loopback only: its dashboard would otherwise be open to everyone."""
    cfg = node.config
    host = cfg.host
    token = http_token(node.curve.secret) if node.curve is not None else None
    if token is None and not is_loopback(host):
        log.warning(
            "no key: the HTTP port %d listens on 127.0.0.1 only, not on %s (pass --key-file to "
            "serve it on the network behind a token)",
            cfg.http_port,
            host,
        )
        host = "127.0.0.1"

    members = node.membership
    assert members is not None
    fetcher = ClusterFetcher(lambda: server.on_loop(members.members), node.curve)
    try:
        server = HttpServer(
            host,
            cfg.http_port,
            loop=loop,
            snapshot=lambda: node_snapshot(node),
            fetcher=fetcher,
            token=token,
        )
    except OSError as exc:
        if not optional:
            raise OSError(f"cannot serve HTTP on {host}:{cfg.http_port}: {exc}") from None
        log.warning(
            "no HTTP: %s:%d is taken (%s); pass --http-port PORT (0: no HTTP)",
            host,
            cfg.http_port,
            exc.strerror or exc,
        )
        return None
    server.start()
    log.info(
        "HTTP on %s:%d: /metrics and the dashboard%s",
        host,
        server.port,
        " (token required: `handoffctl dashboard` prints the URL)" if token else "",
    )
    return server


__all__ = ["start_http"]

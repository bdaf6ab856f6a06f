"""A daemon's HTTP port (``handoffd start --http-port``): the daemon binds it on its own host
and listens, and the first time a connection waits there it starts its HTTP process
(``observability.process``) and hands it the listening socket. Until then the port costs nothing;
afterwards the HTTP work runs in that process, never on the daemon's loop or under its
interpreter lock."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

from handoffd.observability.tokens import http_token
from handoffd.transport.auth import is_loopback

if TYPE_CHECKING:
    from handoffd.daemon.node import Node

log = logging.getLogger("handoffd.http")


class HttpPort:
    def __init__(self, node: Node, sock: socket.socket, token: str | None) -> None:
        self.node = node
        self.sock = sock
        self.token = token
        self.port: int = sock.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._first_connection)

    def _first_connection(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        node = self.node
        curve = node.curve
        conf = {
            "fd": self.sock.fileno(),
            "address": node.address,
            "public": curve.public.decode() if curve is not None else "",
            "secret": curve.secret.decode() if curve is not None else "",
            "token": self.token,
            "log_level": logging.getLevelName(logging.getLogger().getEffectiveLevel()),
        }
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "handoffd.observability.process"],
                stdin=subprocess.PIPE,
                pass_fds=(self.sock.fileno(),),
                start_new_session=False,
            )
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(conf).encode() + b"\n")
            self.process.stdin.close()
        except OSError as exc:
            log.error("cannot start the HTTP process: %s", exc)

    def close(self) -> None:
        try:
            self._loop.remove_reader(self.sock.fileno())
        except (ValueError, OSError, RuntimeError):
            pass
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(2.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(2.0)
        self.sock.close()


def start_http(node: Node, *, optional: bool = False) -> HttpPort | None:
    """Listen on the daemon's own host. With a key (the cluster's, or the user's local key) every
    request needs the token derived from it; a keyless daemon on a network address (--insecure)
    serves HTTP on loopback only: its dashboard would otherwise be open to everyone."""
    cfg = node.config
    host = cfg.host.strip("[]")
    token = http_token(node.curve.secret) if node.curve is not None else None
    if token is None and not is_loopback(host):
        log.warning(
            "no key: the HTTP port %d listens on 127.0.0.1 only, not on %s (pass --key-file to "
            "serve it on the network behind a token)",
            cfg.http_port,
            host,
        )
        host = "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, cfg.http_port))
        sock.listen(64)
        sock.setblocking(False)
        os.set_inheritable(sock.fileno(), True)
    except OSError as exc:
        sock.close()
        if not optional:
            raise OSError(f"cannot serve HTTP on {host}:{cfg.http_port}: {exc}") from None
        log.warning(
            "no HTTP: %s:%d is taken (%s); pass --http-port PORT (0: no HTTP)",
            host,
            cfg.http_port,
            exc.strerror or exc,
        )
        return None
    port = HttpPort(node, sock, token)
    log.info(
        "HTTP on %s:%d: /metrics and the dashboard%s",
        host,
        port.port,
        " (token required: `handoffctl dashboard` prints the URL)" if token else "",
    )
    return port


__all__ = ["HttpPort", "start_http"]

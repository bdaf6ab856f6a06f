"""The daemon's HTTP process: ``python -m handoffd.observability.process`` started by the daemon
(``observability.serve``) the first time someone connects to its HTTP port. It serves on the
listening socket the daemon hands it (``pass_fds``) and reads its settings from stdin as one JSON
line (the daemon's address, its CURVE key, the token), so no key appears in its arguments or
environment. It asks its daemon for everything over the daemon's own client socket, and exits
when the daemon is gone (its parent changes) or on SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading

PARENT_CHECK_S = 1.0


def main() -> int:
    from handoffd.observability.cluster import ClusterFetcher
    from handoffd.observability.http import HttpServer
    from handoffd.transport.keys import CurveKeys

    conf = json.loads(sys.stdin.readline())
    logging.basicConfig(
        level=conf.get("log_level", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log = logging.getLogger("handoffd.http")
    curve = None
    if conf.get("secret"):
        curve = CurveKeys(conf["public"].encode(), conf["secret"].encode())
    sock = socket.socket(fileno=int(conf["fd"]))
    sock.setblocking(True)  # the daemon listened without blocking; the server waits in select
    fetcher = ClusterFetcher(conf["address"], curve)
    server = HttpServer(sock, snapshot=fetcher.metrics, fetcher=fetcher, token=conf.get("token"))
    parent = os.getppid()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def watch_parent() -> None:
        while not done.wait(PARENT_CHECK_S):
            if os.getppid() != parent:
                done.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    server.start()
    log.info("HTTP process %d serving for %s", os.getpid(), conf["address"])
    done.wait()
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

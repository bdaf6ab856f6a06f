"""The daemon's HTTP port: ``/metrics`` (Prometheus text), the dashboard (``/``, ``/runs/RUN``),
its JSON API (``/api/cluster``, ``/api/runs/RUN``, ``/api/runs/RUN/output``,
``POST /api/runs/RUN/cancel``) and live updates (``/api/events``, server-sent events).

Off the daemon's process: this runs in the daemon's HTTP process (``observability.process``), a
``ThreadingHTTPServer`` whose threads ask the daemons as a client would (``cluster.ClusterFetcher``:
metrics, members, runs, task histories), so the daemon's loop pays only for answering those
requests and never shares its interpreter lock with HTTP work. Every request needs the
token (``tokens``) when the daemon has a key: as ``Authorization: Bearer TOKEN``, as ``?token=``
(then kept in a cookie for the page's own requests) or that cookie; a request without it gets 401.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from handoffd import errors
from handoffd.observability.cluster import ClusterFetcher, compact
from handoffd.observability.tokens import token_ok

log = logging.getLogger("handoffd.http")

EVENT_INTERVAL = 0.5  # seconds between checks for news on an event stream
KEEPALIVE_S = 10.0
_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "index.html": "text/html; charset=utf-8",
}
_RUN_PATH = re.compile(r"^/(?:api/)?runs/([A-Za-z0-9_.:-]{1,128})(/cancel|/output)?$")
MAX_TASK_ID = 1024  # characters of a ?task= (task ids are the user's strings)
COOKIE = "handoffd_token"


class HttpServer:
    """``snapshot``: a callable the loop runs to copy what /metrics exports; ``token``: None
    when no token is needed."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        snapshot: Callable[[], dict[str, Any]],
        fetcher: ClusterFetcher,
        token: str | None,
    ) -> None:
        self.token = token
        self.fetcher = fetcher
        self._snapshot = snapshot
        self._exporter: Any = None  # prometheus_client is imported at the first scrape
        self.closing = threading.Event()
        server = self
        handler = type("Handler", (_Handler,), {"server_ref": server})
        # The daemon bound and listens on ``sock``: the server only accepts on it.
        self.httpd = ThreadingHTTPServer(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.httpd.socket.close()
        self.httpd.socket = sock
        self.httpd.daemon_threads = True
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="handoffd-http", daemon=True
        )

    def metrics(self, accept: str) -> tuple[bytes, str]:
        if self._exporter is None:
            from handoffd.observability.metrics import Exporter

            self._exporter = Exporter(self._snapshot)
        return self._exporter.render(accept)  # type: ignore[no-any-return]

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.fetcher.close()


class _Handler(BaseHTTPRequestHandler):
    server_ref: HttpServer
    protocol_version = "HTTP/1.1"
    server_version = "handoffd"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("%s " + format, self.address_string(), *args)

    # -- plumbing --------------------------------------------------------------------------

    def _authorized(self, query: dict[str, list[str]]) -> tuple[bool, bool]:
        """(allowed, the token came in the query: set the cookie)."""
        token = self.server_ref.token
        bearer = self.headers.get("Authorization", "")
        offered = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
        in_query = query["token"][0] if query.get("token") else None
        cookie = None
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                cookie = value
        ok = token_ok(token, offered, in_query, cookie)
        return ok, ok and token is not None and in_query is not None

    def _send(
        self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; style-src 'self'")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, doc: Any, extra: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(doc).encode(), "application/json", extra)

    def _deny(self) -> None:
        self._json(
            401,
            {
                "error": "this daemon needs its HTTP token: `handoffctl dashboard` prints the URL "
                "with it; Prometheus sends it as `Authorization: Bearer TOKEN`"
            },
            {"WWW-Authenticate": "Bearer"},
        )

    # -- requests --------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        try:
            self._get()
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # noqa: BLE001 - one bad request must not take the thread down
            log.exception("HTTP %s failed", self.path)
            try:
                self._json(500, {"error": "internal error (see the daemon's log)"})
            except OSError:
                pass

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        allowed, _ = self._authorized(parse_qs(url.query))
        if not allowed:
            self._deny()
            return
        match = _RUN_PATH.match(url.path)
        if match is None or match.group(2) != "/cancel" or not url.path.startswith("/api/"):
            self._json(404, {"error": f"no such endpoint: POST {url.path}"})
            return
        run_id = match.group(1)
        ok = self.server_ref.fetcher.cancel(run_id)
        self._json(200 if ok else 404, {"run_id": run_id, "cancelled": ok})

    def _get(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        allowed, set_cookie = self._authorized(query)
        if not allowed:
            self._deny()
            return
        extra = {}
        if set_cookie:
            token = self.server_ref.token
            extra["Set-Cookie"] = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
        path = url.path
        srv = self.server_ref
        if path == "/metrics":
            body, ctype = srv.metrics(self.headers.get("Accept", ""))
            self._send(200, body, ctype, extra)
        elif path in ("/", "/index.html") or (
            (page := _RUN_PATH.match(path)) and not page.group(2) and not path.startswith("/api/")
        ):
            self._static("index.html", extra)
        elif path.startswith("/static/") and path[8:] in _STATIC:
            self._static(path[8:], extra)
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon", extra)
        elif path == "/api/cluster":
            self._json(200, srv.fetcher.cluster(), extra)
        elif path == "/api/events":
            self._events(query["run"][0] if query.get("run") else None)
        elif (match := _RUN_PATH.match(path)) is not None and path.startswith("/api/"):
            if match.group(2) == "/output":
                self._output(match.group(1), query, extra)
                return
            if match.group(2):
                self._json(404, {"error": f"no such endpoint: GET {path} (it takes POST)"})
                return
            view = srv.fetcher.run(match.group(1))
            if view is None:
                self._json(404, {"error": f"run {match.group(1)} is not known to the cluster"})
            else:
                self._json(200, view.document(), extra)
        else:
            self._json(404, {"error": f"no such page: {path}"})

    def _output(self, run_id: str, query: dict[str, list[str]], extra: dict[str, str]) -> None:
        """``/api/runs/RUN/output?task=T&since=N&seen=S``: what the task's attempts printed and
        logged (every task's without ``task``), as the run's owner keeps it (``seen``: see
        ``ClusterFetcher.output``)."""
        task = query["task"][0] if query.get("task") else ""
        since_arg = query["since"][0] if query.get("since") else "0"
        if len(task) > MAX_TASK_ID:
            self._json(400, {"error": f"?task= is longer than {MAX_TASK_ID} characters"})
            return
        if not since_arg.isdigit() or len(since_arg) > 18:
            self._json(
                400,
                {"error": f"?since={since_arg[:40]!r} is not an entry number: give the "
                 "`next` of the previous answer, or 0"},
            )  # fmt: skip
            return
        seen = query["seen"][0][:MAX_TASK_ID] if query.get("seen") else ""
        doc = self.server_ref.fetcher.output(run_id, task, int(since_arg), seen)
        if doc is None:
            self._json(404, {"error": f"run {run_id} is not known to the cluster"})
        else:
            self._json(200, doc, extra)

    def _static(self, name: str, extra: dict[str, str]) -> None:
        body = resources.files("handoffd.observability").joinpath("static", name).read_bytes()
        self._send(200, body, _STATIC[name], extra)

    def _events(self, run_id: str | None) -> None:
        """Server-sent events: the cluster (or the run's live state) each time it changed."""
        srv = self.server_ref
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.close_connection = True
        last, quiet_since = b"", time.monotonic()
        sent: tuple[int, int] | None = None  # (id of the run view, its version) last sent
        while not srv.closing.is_set():
            data: dict[str, Any]
            try:
                if run_id:
                    view = srv.fetcher.run(run_id)
                    kind = "run"
                    if view is None:
                        data = {"run_id": run_id, "state": "UNKNOWN"}
                    elif sent is None or sent[0] != id(view):
                        data = compact(view.header, list(view.tasks.values()), True)
                    else:
                        data = compact(view.header, view.since(sent[1]), False)
                    if view is not None:
                        sent = (id(view), view.version)
                else:
                    data, kind = srv.fetcher.cluster(), "cluster"
            except errors.HandoffError as exc:
                data, kind = {"error": str(exc)}, "error"
            body = json.dumps(data).encode()
            if body != last:
                self.wfile.write(b"event: " + kind.encode() + b"\ndata: " + body + b"\n\n")
                self.wfile.flush()
                last, quiet_since = body, time.monotonic()
            elif time.monotonic() - quiet_since > KEEPALIVE_S:
                self.wfile.write(b": keepalive\n\n")
                self.wfile.flush()
                quiet_since = time.monotonic()
            srv.closing.wait(EVENT_INTERVAL)


__all__ = ["HttpServer"]

"""handoffctl kept running in a network namespace, for the netns tests' polls (netns.py).

The netns tests read the daemons' views with ``handoffctl ... nodes --json`` or ``status --json``
run inside a host's namespace, and poll them: each poll was a fresh interpreter importing handoffd
(~0.3-0.4 s of CPU, ~1 s of wall on a busy 2-core machine), several a poll round, so a poll round
took seconds and most of the CPU those tests cost. A ``ResidentCtl`` is one process in the
namespace (started like any other with ``NetnsLab.run``, so the lab kills it) that runs
``handoffd.cli.ctl.main(argv)`` for each request: the same command, options, client and output
as the program, one connection a call, without the interpreter's start. Run as a script it is
that process: a JSON list of arguments a line on stdin, a JSON ``{"rc", "out", "err"}`` a line
on its reply pipe. Commands that run user code (``submit``) stay fresh processes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import subprocess
import sys
import threading
from typing import Any


def serve() -> None:
    """The namespace's side: answer each request line until stdin closes."""
    # Replies go to a private copy of fd 1; fd 1 itself points at stderr, so nothing else this
    # process writes (a library's print, a logging handler made before the redirect) can land in
    # the middle of a reply.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    from handoffd.cli import ctl

    for line in sys.stdin:
        request = json.loads(line)
        if isinstance(request, dict):
            replies.write(json.dumps(_read(request)) + "\n")
            continue
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = ctl.main(request)
            except SystemExit as exc:  # (click's --help and the like)
                rc = exc.code if isinstance(exc.code, int) else 1
        replies.write(json.dumps({"rc": rc, "out": out.getvalue(), "err": err.getvalue()}) + "\n")


def _read(request: dict[str, Any]) -> dict[str, Any]:
    """One of the two reads a poll needs from ``request["address"]``'s daemon alone, as
    ``{"rc", "out": JSON, "err"}``: ``members`` its membership view ({name: status}, what
    ``nodes`` prints in STATUS) and ``health`` its own DescribeHealth (``nodes --json``'s
    "health" of that node). ``nodes`` also asks every ALIVE or SUSPECT member to describe
    itself, waiting --timeout for each one a partition cut off: a poll of a cut node's view took
    --timeout x its SUSPECT peers (5-10 s)."""
    from handoffd import errors
    from handoffd.cli.ctl_ops import _health_doc
    from handoffd.client import Client
    from handoffd.protocol import messages_swim as sw

    try:
        client = Client(
            request["address"], key_file=request.get("key_file"), timeout=request["timeout"]
        )
    except (errors.HandoffError, OSError, ValueError) as exc:
        return {"rc": 3, "out": "", "err": str(exc)}
    try:
        if request["read"] == "members":
            doc: Any = {name: info.status for name, info in client.nodes().items()}
        else:
            doc = _health_doc(client._ask_node(client.address, lambda rid: sw.DescribeHealth(rid)))
    except (errors.HandoffError, OSError) as exc:
        return {"rc": 3, "out": "", "err": str(exc)}
    finally:
        client.close()
    return {"rc": 0, "out": json.dumps(doc), "err": ""}


class ResidentCtl:
    """The test's side: ``call(argv, timeout)`` as ``subprocess.run`` of ``handoffctl argv``
    would return it. A call that outlasts ``timeout`` kills the process (the next call starts a
    new one) and raises ``subprocess.TimeoutExpired``, as ``NetnsLab.exec`` does."""

    def __init__(self, lab: Any, host: int, env: dict[str, str]) -> None:
        self.lab, self.host, self.env = lab, host, env
        self.process: subprocess.Popen[str] | None = None
        self.answers: queue.Queue[str | None] = queue.Queue()

    def _start(self) -> subprocess.Popen[str]:
        process = self.lab.run(
            self.host,
            [sys.executable, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )
        answers: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert process.stdout is not None
            with process.stdout:
                for line in process.stdout:
                    answers.put(line)
            answers.put(None)

        threading.Thread(target=read, daemon=True).start()
        self.process, self.answers = process, answers
        return process

    def read(
        self, what: str, address: str, key_file: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """``what`` ("members" or "health", ``_read``) of the daemon at ``address`` alone; bounded
        as ``call`` is (by ``timeout`` + 30 s: the client's own timeout ends it first)."""
        request = {"read": what, "address": address, "key_file": key_file, "timeout": timeout}
        return self.call(request, timeout + 30.0)

    def call(
        self, argv: list[str] | dict[str, Any], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        process = self.process if self.process and self.process.poll() is None else self._start()
        assert process.stdin is not None
        process.stdin.write(json.dumps(argv) + "\n")
        process.stdin.flush()
        args = argv if isinstance(argv, list) else [f"({argv['read']} of {argv['address']})"]
        try:
            line = self.answers.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise subprocess.TimeoutExpired(args, timeout) from None
        if line is None:
            self.close()
            raise RuntimeError(f"resident handoffctl in host {self.host} exited on {argv}")
        reply = json.loads(line)
        return subprocess.CompletedProcess(args, reply["rc"], reply["out"], reply["err"])

    def close(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            self.lab._kill(self.process)
            with contextlib.suppress(ValueError):
                self.lab.processes.remove(self.process)
            self.process = None


if __name__ == "__main__":
    serve()

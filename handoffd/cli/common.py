"""Shared CLI plumbing: exit codes, logging set-up, runtime files."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _IDS:
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class TextFormatter(logging.Formatter):
    """The text log line, with ``[node=.. run=.. task=..]`` when the record carries them."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        # (the node's name is in every JSON line; a text log is one node's already)
        ids = " ".join(f"{k}={getattr(record, k)}" for k in _IDS[1:] if hasattr(record, k))
        return f"{line} [{ids}]" if ids else line


_IDS = ("node", "run", "task", "attempt", "term")


class NodeField(logging.Filter):
    """Every log record of the daemon carries its node name (``node``)."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "node"):
            record.node = self.node
        return True


def set_log_node(node: str) -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(NodeField(node))


def setup_logging(
    level: str,
    fmt: str,
    *,
    log_file: str | None = None,
    max_bytes: int = 50 << 20,
    backups: int = 5,
) -> None:
    """The log on stderr, and with ``log_file`` also in that file, rotated past ``max_bytes``
    (``backups`` old files kept as PATH.1 ... PATH.N)."""
    from logging.handlers import RotatingFileHandler

    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(
            RotatingFileHandler(log_file, maxBytes=max(0, max_bytes), backupCount=max(0, backups))
        )
    for handler in handlers:
        if fmt == "json":
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def runtime_dir(create: bool = True) -> str:
    """Where running daemons leave a small file (pid, address) so `handoffd stop` can find them,
    and where the local key is: checked private (handoffd.runtime; RuntimeDirError if not)."""
    from handoffd.runtime import runtime_dir as checked

    return checked(create)


def write_runtime_file(name: str, address: str) -> str:
    from handoffd.runtime import write_private

    path = os.path.join(runtime_dir(), f"{name}.json")
    doc = {"name": name, "pid": os.getpid(), "address": address, "started": time.time()}
    write_private(path, json.dumps(doc).encode())
    return path


def fail(code: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code

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
        for key in ("node", "run", "task", "attempt", "term"):
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
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

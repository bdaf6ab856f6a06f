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


def runtime_dir() -> str:
    """Where running daemons leave a small file (pid, address) so `handoffd stop` can find them."""
    path = os.environ.get("HANDOFFD_RUNTIME_DIR")
    if not path:
        base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
        path = os.path.join(base, f"handoffd-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def write_runtime_file(name: str, address: str) -> str:
    path = os.path.join(runtime_dir(), f"{name}.json")
    with open(path, "w") as f:
        json.dump({"name": name, "pid": os.getpid(), "address": address, "started": time.time()}, f)
    return path


def fail(code: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code

"""The installed commands' entry points: ``handoffctl`` and ``handoffd``.

Ctrl-C exits 130 without a traceback (the contract of ``handoffd.cli.app``), also while the
command's modules are still being imported: that takes a few hundred ms on a busy machine, and
a KeyboardInterrupt raised by an import would otherwise print the interpreter's traceback. Only
this module and the two packages' light ``__init__`` are imported before the guard.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # as handoffd.cli.app's (importing it here would open the window again)


def handoffctl() -> int:
    return _guarded("ctl")


def handoffd() -> int:
    return _guarded("daemon")


def _guarded(command: str) -> int:
    """``handoffd.cli.<command>.main()``, its import included in the guard."""
    try:
        import importlib

        return int(importlib.import_module(f"handoffd.cli.{command}").main())
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return EXIT_INTERRUPTED

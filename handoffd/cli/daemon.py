"""``handoffd``: the daemon's command (``start``, ``stop``); see ``handoffd.cli.daemon_cli``.

This module is kept light at import: the daemon's worker processes are ``spawn``-ed, and
multiprocessing re-runs the parent's main module in each of them (as ``__mp_main__``), whether the
daemon was started as ``python -m handoffd.cli.daemon`` or through the ``handoffd`` console script
(which imports this module). Everything else is imported inside ``main``, so a worker loads none of
click, rich, asyncio or the node's configuration (~30 ms and a few MiB per worker).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from handoffd import envvars
    from handoffd.cli.app import run_cli, warn
    from handoffd.cli.daemon_cli import cli

    envvars.adopt_legacy(report=warn)
    return run_cli(cli, argv, "handoffd")


if __name__ == "__main__":
    sys.exit(main())

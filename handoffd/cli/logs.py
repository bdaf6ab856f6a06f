"""``handoffctl logs RUN [TASK] [-f]`` and the live output of ``handoffctl submit``.

A run's output is what its tasks printed and logged, sent while they run (new lines about every
half second) and kept by the run's owner (and its standbys: it survives a takeover); each line is
shown prefixed ``[task@node]``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from handoffd import errors
from handoffd.cli.common import EXIT_OK, EXIT_USAGE, fail
from handoffd.client_run import format_output


def logs_command(
    client: Any, run_id: str, task: str | None, follow: bool, as_json: bool = False
) -> int:
    """Print a run's output (and follow it until the run ends with ``follow``); exit code.
    ``as_json``: one JSON line per entry (task, attempt, node, text), as they come."""
    try:
        run = client.run(run_id)
        for entry in run.output(task, follow=follow):
            if as_json:
                doc = {
                    "task": entry.task_id,
                    "attempt": entry.attempt,
                    "node": entry.node,
                    "text": entry.text,
                }
                sys.stdout.write(json.dumps(doc) + "\n")
            else:
                sys.stdout.write(format_output(entry))
            sys.stdout.flush()
    except errors.UnknownRun as exc:
        return fail(EXIT_USAGE, str(exc))
    return EXIT_OK


def stream_output(run: Any, out: TextIO, on_idle: Callable[[], None] | None = None) -> None:
    """Print a submitted run's output as it comes (running tasks' too), until the run ends (the long poll
    is the wait); ``on_idle`` is called between polls (a progress display's turn)."""
    poll = 0.3 if on_idle is not None else 2.0
    for batch in run.output_polls(None, follow=True, poll=poll):
        for entry in batch:
            out.write(format_output(entry))
        out.flush()
        if on_idle is not None:
            on_idle()

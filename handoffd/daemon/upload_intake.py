"""A big submission's decode and checks, off the event loop (issue 19: no stall past ~100 ms).

An upload (``handoffd.upload``) made whole is a submission of up to ``max_tasks_per_run`` tasks:
decoding it, the intake bounds (``intake.check_submission``) and the DAG's rules with the
TaskSpecs (``validation.wire_specs``) and the run's graph (``scheduler.graph.build_graph``) took the
loop 16-21 s for 200,000 tasks. ``prepare`` does all of that in one worker thread (``Preparer``);
the loop then only admits the message and feeds the owner the checked specs and their graph
(``Owner.submit_checked``). The work holds the GIL, but CPython hands
it back to the loop every switch interval (5 ms), so the daemon goes on answering meanwhile.
``prepare`` reads only its arguments (the frames, an immutable codec configuration, the limits,
the scheduler's placement order, which reads only its arguments and the fixed backend), so it
shares nothing with the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handoffd import intake, validation
from handoffd.config import Limits
from handoffd.errors import HandoffError
from handoffd.protocol import messages as m
from handoffd.scheduler.graph import Order, TaskGraph, build_graph
from handoffd.spec import TaskSpec


@dataclass
class Prepared:
    """What the thread made of an upload: ``decoded`` is the codec's result (None: undecodable),
    and for a submission ``specs`` (checked) or ``error`` (why it is refused)."""

    decoded: Any
    specs: list[TaskSpec] | None = None
    error: HandoffError | None = None
    graph: TaskGraph | None = None


def prepare(frames: list[Any], codec: Any, limits: Limits, order: Order | None) -> Prepared:
    decoded = codec.decode(frames)
    if decoded is None or not isinstance(decoded.msg, (m.SubmitRun, m.SubmitAndWait)):
        return Prepared(decoded)
    msg = decoded.msg
    try:
        # The cheap bounds first (ids, task count), then the DAG's rules, as for a whole message.
        intake.check_submission(msg.run_id, [t.id for t in msg.tasks], limits)
        specs = validation.wire_specs(msg, list(decoded.frames))
        # The run's graph, as the scheduler would build it (its placement order): pure.
        graph = build_graph(specs, msg.outputs, order)
    except HandoffError as exc:
        return Prepared(decoded, error=exc)
    return Prepared(decoded, specs=specs, graph=graph)


class Preparer:
    """One thread for every upload of this process (``PREPARER``), started at the first: uploads
    are rare and big, and two at once would only share the same GIL. Idle, it holds nothing."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def submit(
        self,
        frames: list[Any],
        codec: Any,
        limits: Limits,
        order: Order | None,
        done: Callable[[Prepared], None],
    ) -> None:
        """Prepare ``frames`` off the loop; ``done`` runs on the loop with the result."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, "handoffd-upload")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, prepare, frames, codec, limits, order)
        future.add_done_callback(lambda f: done(f.result()) if not f.cancelled() else None)


PREPARER = Preparer()

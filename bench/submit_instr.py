"""The owner's intake of one submission, in process, for instruction counts (callgrind).

Builds a W1 (``--shape w1``: N independent no-ops) or W2 (``--shape w2``: layers of 100, three
parents each, N tasks in all) submission as a client encodes it, then runs once, under
``operator.call`` (so ``valgrind --tool=callgrind --collect-atstart=no
--toggle-collect=_operator_call`` counts only it), one of:

- ``--part daemon`` (default): what the owner daemon does with it: the codec's decode (on its
  loop; a ``SubmitColumns`` turned into the submission it stands for, as the node does), then ``upload_intake.prepare_whole`` (the bounds, ``validation.wire_specs``,
  ``graph.build_graph``, the ``RunState`` and its ``Prebuilt``, the collector paused), as the
  upload thread does for a run of 1,000 tasks or more;
- ``--part scheduler``: the owner scheduler's ``RunState`` built from ``TaskSpec``s with no graph
  given (what ``bench/bench_owner.py``'s ``RunSubmitted`` makes it do), the collector off (as
  in the upload thread, so its collections do not blur the count).

``--form heads`` (default) sends it as today's client does to a daemon of 6 (``SubmitColumns``
built by ``dag_columns`` with each code head once and a tail a function: ``as_sent``,
``sent_payloads``), ``--form columns`` as a client does to a daemon of 5 (whole payloads),
``--form rows`` as ``TaskMeta`` records (older clients). ``--upload``: the daemon's part as for
an upload (the frames views of the reassembled bytes, ``upload_intake.prepare``: the codec's
decode in the upload thread), as a W1 run of 10,000 arrives.

Prints the number of tasks and the process CPU seconds of the part (a check, not the figure);
the figure is callgrind's total of two runs of different N, subtracted, over their difference::

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call \\
        --callgrind-out-file=/tmp/cg.%p .venv/bin/python bench/submit_instr.py --tasks 4000
"""

from __future__ import annotations

import argparse
import gc
import operator
import random
import time
from typing import Any

import handoffd
from handoffd import upload
from handoffd.config import Limits
from handoffd.daemon import upload_intake as ui
from handoffd.dag_columns import submission
from handoffd.protocol import messages as m
from handoffd.protocol.codec import Codec, Rows
from handoffd.protocol.messages_submit import (
    COLUMNS_SINCE,
    HEADS_SINCE,
    SubmitColumns,
    as_sent,
    as_submission,
    sent_payloads,
)
from handoffd.scheduler.run import RunState
from handoffd.spec import RunOptions, TaskSpec


def noop(*args: Any) -> None:
    return None


def dag_of(shape: str, n: int) -> handoffd.DAG:
    dag = handoffd.DAG()
    rng = random.Random(7)
    width = 100
    for i in range(n):
        layer = i // width
        deps = [f"t{(layer - 1) * width + j}" for j in rng.sample(range(width), 3)]
        args = deps if shape == "w2" and layer > 0 else []
        dag.add_function(handoffd.Function(id=f"t{i}", code=noop, args=args, extra_args=[i]))
    return dag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--shape", choices=("w1", "w2"), default="w1")
    parser.add_argument("--part", choices=("daemon", "scheduler"), default="daemon")
    parser.add_argument("--form", choices=("heads", "columns", "rows"), default="heads")
    parser.add_argument(
        "--upload",
        action="store_true",
        help="the daemon's part as for an upload: the frames views of the reassembled bytes "
        "(upload.Whole, as a W1 run of 10,000 arrives), upload_intake.prepare",
    )
    args = parser.parse_args()
    dag = dag_of(args.shape, args.tasks)
    rows, payloads = dag.wire_tasks(
        policy="binpack", max_retries=3, outputs=None, allow_empty=False, packages=()
    )
    if args.part == "daemon":
        codec = Codec()
        request: Any = m.SubmitAndWait(
            1, "r1", Rows(rows), 3, "binpack", None, 1.0, 1 << 20, True, ()
        )
        if args.form == "columns":
            request = as_sent(request, COLUMNS_SINCE)
        elif args.form == "heads":
            sent, payloads, _ = submission(dag, "binpack", 3, None, (), 0)
            request = m.SubmitAndWait(1, "r1", sent, 3, "binpack", None, 1.0, 1 << 20, True, ())
            request = as_sent(request, HEADS_SINCE)
            payloads = sent_payloads(sent, payloads, HEADS_SINCE)
        frames = [bytes(f) for f in codec.encode(request, sender="c", frames=payloads)]
        limits = Limits()

        whole = bytearray(upload.pack(frames))

        def uploaded() -> Any:
            return ui.prepare(upload.Whole(whole), codec, limits, None)

        def part() -> Any:
            head = ui.unpack_head(frames[0])
            decoded = codec.decode(list(frames), head)
            msg = decoded.msg
            if type(msg) is SubmitColumns:
                msg = as_submission(msg)
            return ui.prepare_whole(msg, decoded.frames, limits, None)

    else:
        specs = [TaskSpec(r[0], tuple(r[1]), dict(r[2]), b"payload") for r in rows]

        def part() -> Any:
            return RunState("r1", specs, RunOptions())

    if args.part == "scheduler":
        gc.disable()
    start = time.process_time()
    out = operator.call(uploaded if args.upload else part)
    seconds = time.process_time() - start
    if args.part == "daemon":
        assert out.error is None, out.error
    print(f"{args.shape} {args.part}: {args.tasks} tasks, {seconds * 1e3:.1f} ms")


if __name__ == "__main__":
    main()

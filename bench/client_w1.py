"""The client's CPU a W1 round, by part, in this process (issue 13: the machine is CPU-bound as a
whole, so the client's share counts; its encode and its read are also W1's serial start and tail).

    .venv/bin/python bench/client_w1.py --part build|encode|read|owner [--tasks N]

Each part runs once under ``operator.call`` after a warm-up, so ``valgrind --tool=callgrind
--collect-atstart=no --toggle-collect=_operator_call`` counts only it; run two ``--tasks`` and
take the difference over the difference of N for instructions a task:

- **build**: the user's ``handoffd.DAG`` of N ``Function(id=f"n{i}", code=noop, extra_args=[i])``
  as ``bench/_peers/handoffd_runner.py``'s W1 builds it (outside the bench's timed window, inside
  its client's CPU);
- **encode**: ``Client.execute`` of that DAG up to the frames its first send gets
  (``bench/client_encode.py``'s fake connection: validation, columns, codec, upload's cut);
- **read**: an N-value outcome as the owner sends it (``bench/outcome_tail.py``: one block, as to
  a client of protocol 7), cut from the local socket's bytes, decoded, kept and loaded as
  ``execute`` returns it;
- **owner**: the owner's side of that outcome (``outcome_tail.owner_side``).

Without valgrind it prints each part's process CPU, best of ``--repeat`` (a check only: the
machine is shared).
"""

from __future__ import annotations

import argparse
import operator
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def build(n: int) -> Any:
    from _peers.common import noop

    import handoffd

    dag = handoffd.DAG()
    for i in range(n):
        dag.add_function(handoffd.Function(id=f"n{i}", code=noop, extra_args=[i]))
    return dag


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("build", "encode", "read", "owner"), required=True)
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    import cloudpickle
    from _peers.common import ship_by_value

    ship_by_value(cloudpickle)
    n = args.tasks
    if args.part in ("build", "encode"):
        from client_encode import _Sent, fake_client, send_of

        client = fake_client(99)
        send_of(client, build(200))  # warm: the code cache, the imports

        def encode(dag: Any) -> None:
            try:
                client.execute(dag)
            except _Sent:
                pass

        build(200)
        work, arg = (build, n) if args.part == "build" else (encode, None)
    else:
        import outcome_tail

        scheduler = outcome_tail.finished_run(n)
        ids = [f"t{i}" for i in range(n)]
        data = outcome_tail.owner_side(scheduler)
        out = outcome_tail.client_side(data, ids)
        assert len(out) == n and sum(out.values()) == n * (n - 1) // 2, "checksum"
        if args.part == "read":
            work, arg = (lambda _: outcome_tail.client_side(data, ids)), None
        else:
            work, arg = outcome_tail.owner_side, scheduler
    best = 1e9
    for _ in range(args.repeat):
        if args.part == "encode":
            arg = build(n)
        start = time.process_time()
        operator.call(work, arg)
        best = min(best, time.process_time() - start)
    print(f"{args.part}: {n} tasks, {best * 1e3:.1f} ms (process CPU, best of {args.repeat})")


if __name__ == "__main__":
    main()

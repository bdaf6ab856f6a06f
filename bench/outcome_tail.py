"""The serial tail of a W1 ``execute``, in this process: the owner's outcome and the client's reading
of it, after the run's last task (issue 13; ``bench/w1_timeline.py`` shows the tail in daemons).

    .venv/bin/python bench/outcome_tail.py [--tasks 10000] [--side owner|client|both]

Runs a ``--tasks`` no-op run to its end on the owner's real scheduler (``bench_owner.Sim``: two
nodes, values reported inline as W1's are), then times, best of 5:

- **owner**: ``Waiting.answer`` of the run's ``SubmitAndWait`` waiter (release, as ``execute``
  sends it): the outcome built from the results the scheduler holds, encoded by a node's codec
  and framed for the local socket (``local_socket.pack``) as ``LocalListener.reply`` writes it;
- **client**: those bytes cut into frames (``local_socket.take``, as ``LocalClient.recv``),
  decoded (``codec.decode``), kept (``Run._take``) and loaded (``Run._collect``) as ``execute``
  returns them.

``--named``: the outcome as a client of protocol 6 gets it (``task_ids`` and a frame a value),
not as one block (``protocol.outcome_block``). Prints ms per side and the outcome's bytes. For instruction counts, run it under callgrind with
``--collect-atstart=no --toggle-collect=_operator_call`` and one ``--side`` (each side runs once
inside ``operator.call``; ``--repeat 1``), against another checkout's copy for A/B.
"""

from __future__ import annotations

import argparse
import operator
import os
import pickle
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_owner  # noqa: E402
from bench_owner import Sim, w1_specs  # noqa: E402

from handoffd.daemon import results as results_mod  # noqa: E402
from handoffd.daemon.owner_waits import Waiter, Waiting  # noqa: E402
from handoffd.protocol import codec  # noqa: E402
from handoffd.scheduler import events as ev  # noqa: E402
from handoffd.scheduler.run import RunOptions  # noqa: E402
from handoffd.transport import local_socket  # noqa: E402


class _Port:
    name = "n0"

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def now(self) -> float:
        return 0.0

    def reply(self, conn: bytes, msg: Any, frames: Any = None) -> None:
        head = codec.encode(msg, sender=self.name, frames=list(frames or ()))
        self.sent.append(local_socket.pack(head))

    def call_later(self, delay: float, callback: Any, *args: Any) -> Any:
        raise AssertionError("the run is over: nothing waits")


class _Results:
    """``ResultFetcher.outcome_values`` over the scheduler alone (every value is held there)."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def outcome_values(self, run_id: str, max_bytes: int) -> Any:
        return results_mod.outcome_values(
            self.scheduler, "n0", lambda r, t: None, run_id, max_bytes, lambda r, t: -1
        )


class _Events:
    """``bench_owner``'s events, its reports' values pickled as a worker's are (W1's ints)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(ev, name)

    @staticmethod
    def TasksSucceeded(run_id: str, node: str, ids: Any, *rest: Any) -> Any:  # noqa: N802
        tries, sizes, _, durations = rest
        values = [pickle.dumps(int(i[1:])) for i in ids]
        return ev.TasksSucceeded(run_id, node, ids, tries, sizes, values, durations)


def finished_run(n: int) -> Any:
    bench_owner.ev = _Events()  # type: ignore[assignment]
    sim = Sim(2, 1.0, 32, 64)
    sim.feed([ev.RunSubmitted("run", w1_specs(n), RunOptions())])
    while "run" not in sim.finished:
        if not sim.step():
            raise RuntimeError("the simulation stalled")
    return sim.sched


def owner_side(scheduler: Any, blocks: bool = True) -> bytes:
    port = _Port()
    waiting = Waiting(port, scheduler, _Results(scheduler), lambda run_id: None)  # type: ignore[arg-type]
    waiter = Waiter(b"client", 7, True, 64 << 20, True, 30.0, blocks=blocks)
    assert waiting.answer("run", waiter, final=True)
    (parts,) = port.sent
    return b"".join(bytes(p) for p in parts)


def client_side(data: bytes, ids: list[str]) -> dict[str, Any]:
    from handoffd.client_run import Run

    buf = bytearray(data)
    (frames,), _ = local_socket.take(buf, 1 << 30, 1 << 62)
    decoded = codec.decode(frames)
    assert decoded is not None
    run = Run(None, "run", "", ids, None)  # type: ignore[arg-type]
    run._block_ids = tuple(ids)  # (as ``Client._submit`` sets it for an execute)
    run._take(decoded.msg, decoded.frames)
    return run._collect(ids)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--side", choices=("owner", "client", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--named", action="store_true", help="the outcome a client of protocol 6 gets (ids, frames)"
    )
    args = parser.parse_args()
    scheduler = finished_run(args.tasks)
    ids = [f"t{i}" for i in range(args.tasks)]
    blocks = not args.named
    data = owner_side(scheduler, blocks)
    out = client_side(data, ids)
    assert len(out) == args.tasks
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        if args.side in ("owner", "both"):
            t = time.perf_counter()
            operator.call(owner_side, scheduler, blocks)
            best["owner"] = min(best.get("owner", 1e9), time.perf_counter() - t)
        if args.side in ("client", "both"):
            t = time.perf_counter()
            operator.call(client_side, data, ids)
            best["client"] = min(best.get("client", 1e9), time.perf_counter() - t)
    print(
        f"outcome of {args.tasks} values: {len(data):,} bytes; "
        + ", ".join(f"{side} {1e3 * s:.2f} ms" for side, s in best.items())
    )


if __name__ == "__main__":
    main()

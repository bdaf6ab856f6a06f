"""The owner's intake of a submission, step by step, in process (issue 13: the owner's per-task
cost): what ``daemon.upload_intake.prepare`` does with a W1-shaped upload (N independent
functions) in its thread, each step's process CPU per task, best of ``--repeat``.

    .venv/bin/python bench/bench_intake.py [--tasks 10000] [--repeat 7]

Run it from a neutral directory with each build's python for an A/B (``cd /tmp``).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import time
from collections.abc import Callable
from typing import Any

import handoffd
from handoffd import intake, validation
from handoffd.config import Limits
from handoffd.daemon import upload_intake as ui
from handoffd.protocol import messages as m
from handoffd.protocol.codec import Codec, Rows
from handoffd.protocol.snapshot import far_specs, pack_parts
from handoffd.scheduler.graph import build_graph
from handoffd.scheduler.intake import probes
from handoffd.scheduler.run import RunState


def noop(*args: Any) -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    n = args.tasks
    dag = handoffd.DAG()
    for i in range(n):
        dag.add_function(handoffd.Function(id=f"n{i}", code=noop, extra_args=[i]))
    rows, payloads = dag.wire_tasks(
        policy="binpack", max_retries=3, outputs=None, allow_empty=False, packages=()
    )
    codec = Codec()
    request = m.SubmitAndWait(1, "r1", Rows(rows), 3, "binpack", None, 1.0, 1 << 20, True, ())
    frames = [bytes(f) for f in codec.encode(request, sender="c", frames=payloads)]
    limits = Limits()
    # (a build from before ``acyclic`` gets the call it had)
    checked = {"acyclic": True} if "acyclic" in inspect.signature(build_graph).parameters else {}
    best: dict[str, float] = {}

    def step(name: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        out = call(*args, **kwargs)
        best[name] = min(best.get(name, 1e9), time.process_time() - start)
        return out

    def specs_of(msg: Any, decoded: Any) -> tuple[Any, ...]:
        return tuple(validation.wire_specs(msg, decoded.frames))

    gc.disable()  # (the upload thread runs with the collector paused, too)
    for _ in range(args.repeat):
        head = step("unpack_head", ui.unpack_head, frames[0])
        decoded = step("decode", codec.decode, list(frames), head)
        msg = decoded.msg
        step("bounds", intake.check_submission, msg.run_id, [t.id for t in msg.tasks], limits)
        specs = step("checks + specs", specs_of, msg, decoded)
        graph = step("graph", build_graph, specs, msg.outputs, None, **checked)
        options = ui.run_options(msg)
        run = step("RunState", RunState, msg.run_id, specs, options, graph=graph)
        step("packed parts", pack_parts, run)
        step("probes", probes, run)
        step("far specs", far_specs, specs)
    for name, seconds in best.items():
        print(f"{name:16s} {seconds * 1e6 / n:6.2f} us a task")
    print(f"{'total':16s} {sum(best.values()) * 1e6 / n:6.2f} us a task ({n} tasks)")


if __name__ == "__main__":
    main()

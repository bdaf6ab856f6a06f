# cython: annotation_typing=False
# (the annotations are for mypy; run_snapshot.pxd beside it marks the module compiled)
"""A run as plain data and back (``RunState.snapshot`` / ``RunState.from_snapshot``): what a
standby is sent and what a takeover rebuilds the run from. Out of ``run.py`` (split at its size
limit); compiled beside it, so a takeover's rebuild of a big run stays a compiled loop.

A rebuilt task keeps its attempts as rows and its copies as a tuple, as ``RunState`` does (atoms in
tuples: the collector stops tracking them, so a big run's finished tasks cost no full collection).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from handoffd.protocol.snapshot import error_from_data, error_to_data, spec_from_data, spec_to_data
from handoffd.scheduler import history as hist
from handoffd.scheduler.run_books import YIELD_EVERY, let_go, recount
from handoffd.spec import RunOptions


def snapshot(run: Any, history: bool = True) -> dict[str, Any]:
    """``RunState.snapshot``."""
    o = run.options
    return {
        "run_id": run.run_id,
        "seq": run.seq,
        "term": run.term,
        "state": run.state,
        "error": error_to_data(run.error),
        "released": run.released,
        "holders": sorted(run.holders),
        "options": {
            "max_retries": o.max_retries,
            "timeout": o.timeout,
            "policy": o.policy,
            "outputs": list(o.outputs) if o.outputs is not None else None,
            "packages": list(o.packages),
        },
        "specs": [spec_to_data(s) for s in run.specs],
        "group_node": dict(run.group_node),
        "submitted": run.submitted,
        "finished": run.finished,
        "tasks": {
            tid: {
                "state": r.state,
                "attempt": r.attempt,
                "node": r.node,
                "failures": r.failures,
                "losses": r.losses,
                "completions": r.completions,
                "size": r.size,
                "value": r.value,
                "locations": sorted(r.locations),
                "delayed": r.delayed,
                "last_error": list(r.last_error),
                "history": [list(h) for h in hist.transitions(r.moves)] if history else [],
                "attempts": hist.rows(r.attempts),
            }
            for tid, r in run.tasks.items()
        },
    }


def restore(
    cls: Any,
    data: dict[str, Any],
    order: Callable[..., tuple[list[int], list[float]]] | None = None,
) -> Any:
    """``RunState.from_snapshot`` (``cls``: the run class)."""
    opts = data["options"]
    options = RunOptions(
        max_retries=opts["max_retries"],
        timeout=opts["timeout"],
        policy=opts["policy"],
        outputs=tuple(opts["outputs"]) if opts["outputs"] is not None else None,
        packages=tuple(opts.get("packages", ())),
    )
    specs = [spec_from_data(s) for s in data["specs"]]
    run = cls(data["run_id"], specs, options, seq=data["seq"], term=data["term"], order=order)
    run.intake = len(run.ordered)  # the tasks are as the snapshot says
    run.state = data["state"]
    run.error = error_from_data(data["error"])
    run.released = data["released"]
    run.holders = set(data["holders"])
    run.group_node.update(data["group_node"])
    run.submitted = data.get("submitted", 0.0)
    run.finished = data.get("finished", 0.0)
    for i, (tid, t) in enumerate(data["tasks"].items()):
        rec = run.tasks[tid]
        rec.state, rec.attempt, rec.node = t["state"], t["attempt"], t["node"]
        rec.failures, rec.losses, rec.completions = t["failures"], t["losses"], t["completions"]
        rec.size, rec.value = t["size"], t["value"]
        rec.locations = tuple(sorted(set(t["locations"])))
        rec.delayed = t["delayed"]
        rec.last_error = (t["last_error"][0], t["last_error"][1], t["last_error"][2])
        rec.moves = hist.flat(t["history"])
        rec.attempts = hist.restore(t.get("attempts", ()))
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            let_go()  # (a takeover builds a big run in a thread: as in RunState.__init__)
    recount(run)
    return run

"""``handoffctl submit``: load a dag.py, submit it, show progress, print the outcome.

Called by the click command in ``handoffd.cli.ctl`` with plain arguments; returns an exit code.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import sys
import time
import traceback
import uuid
from typing import Any

from handoffd import client_moves, errors
from handoffd.cli.app import EXIT_INTERRUPTED, err_console, out_console, print_json
from handoffd.cli.common import EXIT_OK, EXIT_RUN_FAILED


def load_dag(path: str) -> Any:
    """Import a dag.py and return its DAG; raises ValidationError saying what is wrong."""
    import cloudpickle

    from handoffd.dag import DAG

    if not os.path.isfile(path):
        raise errors.ValidationError("bad_dag_file", None, f"{path}: no such file")
    module_name = f"handoffd_dagfile_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise errors.ValidationError("bad_dag_file", None, f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    directory = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise errors.ValidationError(
            "bad_dag_file", None, f"{path}:{exc.lineno}: syntax error: {exc.msg}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any error in user code is reported, not raised
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])
        raise errors.ValidationError(
            "bad_dag_file", None, f"{path} raised while loading: {type(exc).__name__}: {exc}\n{tb}"
        ) from None
    finally:
        try:
            sys.path.remove(directory)
        except ValueError:
            pass
    # Functions defined in the file travel by value: workers have no copy of it.
    cloudpickle.register_pickle_by_value(module)
    dag = getattr(module, "dag", None)
    if dag is None and callable(getattr(module, "build_dag", None)):
        try:
            dag = module.build_dag()
        except Exception as exc:  # noqa: BLE001
            raise errors.ValidationError(
                "bad_dag_file", None, f"{path}: build_dag() raised {type(exc).__name__}: {exc}"
            ) from None
    if dag is None:
        raise errors.ValidationError(
            "bad_dag_file",
            None,
            f"{path} defines neither a module-level `dag` nor a function `build_dag()`",
        )
    if not isinstance(dag, DAG):
        raise errors.ValidationError(
            "bad_dag_file", None, f"{path}: `dag` is a {type(dag).__name__}, not a handoffd.DAG"
        )
    # The modules the file imported from beside it are shipped with the run (handoffd.packages).
    dag._source_dir = directory
    return dag


def progress_counts(counts: dict[str, int], total: int) -> dict[str, int]:
    """What the progress display shows, from a run's task counts: ``running`` is only what a
    worker is executing; ``queued`` is dispatched to a node and waiting there (ASSIGNED);
    ``waiting`` is not placed yet (PENDING: inputs missing, READY: no room)."""
    done = counts.get("DONE", 0)
    running = counts.get("RUNNING", 0)
    queued = counts.get("ASSIGNED", 0)
    failed = counts.get("FAILED", 0) + counts.get("CANCELLED", 0)
    waiting = max(0, total - done - running - queued - failed)
    return {
        "done": done,
        "running": running,
        "queued": queued,
        "waiting": waiting,
        "failed": failed,
    }


def status_doc(status: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "run_id": status.run_id,
        "state": status.state,
        "counts": status.counts,
        "owner": status.owner,
        "term": status.term,
        "standbys": list(status.standbys),
        # true: the owner is not alive to the node asked; the rest is as last replicated to it
        "owner_changing": getattr(status, "changing", False),
    }
    if doc["owner_changing"]:
        doc["next_owner"] = status.next_owner
    if status.done:
        doc["placement"] = status.placement
    if status.error is not None:
        doc["error"] = {"type": type(status.error).__name__, "message": str(status.error)}
    return doc


def jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if hasattr(value, "tolist"):
            return jsonable(value.tolist())
        return repr(value)


class _Bar:
    """A rich progress bar on stderr (only on a terminal): done of total, and the other counts."""

    def __init__(self, total: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.total = total
        self.progress = Progress(
            TextColumn("[bold]run"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=err_console(),
            transient=False,
        )
        self.task = self.progress.add_task("run", total=total or 1, detail="")
        self.progress.start()

    def update(self, counts: dict[str, int]) -> None:
        c = progress_counts(counts, self.total)
        detail = (
            f"{c['running']} running, {c['queued']} queued on nodes, {c['waiting']} waiting"
            + (f", [red]{c['failed']} failed[/red]" if c["failed"] else "")
        )
        self.progress.update(self.task, completed=c["done"], detail=detail)

    def close(self) -> None:
        self.progress.stop()


def submit(
    client: Any,
    file: str,
    *,
    no_wait: bool,
    max_retries: int,
    policy: str,
    output: str | None,
    as_json: bool,
    working_dir: str | None = None,
    py_module: tuple[str, ...] = (),
    quiet: bool = False,
    outputs: str | None = None,
) -> int:
    dag = load_dag(file)
    wanted: list[str] | None = None
    if outputs is not None:
        wanted = [o.strip() for o in outputs.split(",") if o.strip()]
    elif not no_wait and not output:
        # The summary shows the sinks: fetching every intermediate value only to print one
        # number moved 189 MiB once (issue 14). --output FILE keeps writing them all.
        wanted = _sinks(dag) or None
    try:
        run = client.submit(
            dag,
            max_retries=max_retries,
            policy=policy,
            outputs=wanted,
            working_dir=working_dir,
            py_modules=list(py_module) or None,
        )
    except KeyboardInterrupt as exc:
        run_id = client_moves.interrupted_run(exc)
        err_console().print(
            f"interrupted while submitting {file}: "
            + (
                f"run {run_id} may have reached the cluster (`handoffctl status {run_id}` "
                f"tells, `handoffctl cancel {run_id}` stops it)"
                if run_id
                else "nothing was sent"
            ),
            markup=False,
        )
        return EXIT_INTERRUPTED
    if no_wait:
        if as_json:
            print_json({"run_id": run.id, "owner": run.owner})
        else:
            print(run.id)
        return EXIT_OK
    total = sum(1 for f in dag.functions.values() if getattr(f, "type", "regular") != "inline")
    bar = _Bar(total) if sys.stderr.isatty() and not as_json else None
    started = time.monotonic()
    failed: errors.HandoffError | None = None
    try:
        if not quiet:
            from handoffd.cli.logs import stream_output

            # Each attempt's output as it ends, prefixed [task@node], until the run ends (the
            # output long poll is the wait); on stderr with --json (stdout is one document).
            on_idle = (lambda: bar.update((run._last or run.status()).counts)) if bar else None
            stream_output(run, sys.stderr if as_json else sys.stdout, on_idle)
        while True:
            try:
                status = run.wait(0.2 if bar else None)
                break
            except errors.Timeout:
                if bar:
                    bar.update((run._last or run.status()).counts)
            except (errors.TaskFailed, errors.RunCancelled) as exc:
                failed = exc
                status = run._last or run.status()
                break
    except KeyboardInterrupt:
        if bar:
            bar.close()
        err_console().print(
            f"interrupted: run {run.id} goes on in the cluster "
            f"(`handoffctl status {run.id}`, `handoffctl cancel {run.id}`)",
            markup=False,
        )
        return EXIT_INTERRUPTED
    if bar:
        bar.update(status.counts)
        bar.close()
    elapsed = time.monotonic() - started
    status = run.status()
    results = run.results() if failed is None else {}
    if output and failed is None:
        if output.endswith(".json"):
            with open(output, "w") as f:
                json.dump({k: jsonable(v) for k, v in results.items()}, f, indent=1)
        else:
            with open(output, "wb") as binary:
                pickle.dump(results, binary)
    if as_json:
        doc = status_doc(status)
        doc["elapsed_s"] = round(elapsed, 3)
        if failed is None and not output:
            doc["results"] = {k: jsonable(v) for k, v in results.items()}
        print_json(doc)
    else:
        _print_summary(status, results, failed, elapsed, show_values=not output, sinks=_sinks(dag))
    if failed is None:
        run.release()
    return EXIT_RUN_FAILED if failed is not None else EXIT_OK


_LIST_LIMIT = 24


def _sinks(dag: Any) -> list[str]:
    """The functions nobody consumes (inline ones have no value of their own to fetch)."""
    consumed = {dep for f in dag.functions.values() for dep in f.args}
    return sorted(
        i
        for i, f in dag.functions.items()
        if i not in consumed and getattr(f, "type", "regular") != "inline"
    )


def _print_summary(
    status: Any,
    results: dict[str, Any],
    failed: Exception | None,
    elapsed: float,
    show_values: bool,
    sinks: list[str] | None = None,
) -> None:
    from rich.table import Table
    from rich.text import Text

    out = out_console()
    counts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(status.counts.items()) if v)
    style = "green" if status.state == "DONE" else "red"
    out.print(
        Text("run ")
        + Text(status.run_id, style="bold")
        + Text(": ")
        + Text(status.state, style=style)
        + Text(f" in {elapsed:.2f}s ({counts}); owner {status.owner}")
    )
    if failed is not None:
        out.print(Text(f"  {type(failed).__name__}: {failed}", style="red"))
        tb = getattr(failed, "traceback", "")
        if tb:
            out.print(Text("  remote traceback:\n    " + tb.rstrip().replace("\n", "\n    ")))
        return
    per_node: dict[str, int] = {}
    for node in status.placement.values():
        per_node[node] = per_node.get(node, 0) + 1
    out.print(
        Text("  tasks per node: " + ", ".join(f"{n} {c}" for n, c in sorted(per_node.items())))
    )
    shown = sorted(status.placement)
    if len(shown) > _LIST_LIMIT:
        # A big DAG: list its sinks (what nobody consumes), the run's real outputs.
        shown = [f for f in (sinks or []) if f in status.placement][:_LIST_LIMIT]
        out.print(Text(f"  {len(status.placement)} functions; showing {len(shown)} sink(s):"))
    table = Table(box=None, show_header=True, pad_edge=False, padding=(0, 2, 0, 2))
    table.add_column("FUNCTION", no_wrap=True)
    table.add_column("NODE", no_wrap=True)
    if show_values:
        table.add_column("VALUE", overflow="ellipsis")
    for function_id in shown:
        row = [function_id, status.placement[function_id]]
        if show_values:
            text = repr(results[function_id]) if function_id in results else ""
            row.append(text if len(text) <= 100 else text[:97] + "...")
        table.add_row(*(Text(cell) for cell in row))
    out.print(table)

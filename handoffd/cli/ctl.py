"""``handoffctl``: submit DAG files, watch runs, list nodes, make keys.

Exit codes (the contract): 0 success; 1 the run failed or was cancelled; 2 usage or validation
error (bad flags, bad dag.py, unschedulable cost); 3 cannot reach or authenticate to the daemon.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pickle
import sys
import time
import traceback
import uuid
from typing import Any

from handoffd import errors
from handoffd.cli.common import EXIT_OK, EXIT_RUN_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, fail


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="handoffctl", description="control a handoffd cluster")
    parser.add_argument(
        "--address", help="daemon HOST:PORT (default: HANDOFF_ADDRESS, else 127.0.0.1:7788)"
    )
    parser.add_argument(
        "--key-file",
        help="cluster key file (when the cluster uses one; default HANDOFF_KEY_FILE, else your "
        "local key, which your keyless daemons hold)",
    )
    parser.add_argument(
        "--allow-local-users",
        action="store_true",
        help="connect without authentication (also HANDOFFD_ALLOW_LOCAL_USERS=1): to a daemon "
        "started with --allow-local-users; nothing proves who answers",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="use a key file other users can read (with a warning)",
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the daemon to answer"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    submit = sub.add_parser("submit", help="run the DAG defined in a Python file")
    submit.add_argument("file", help="a .py file defining `dag` or `build_dag()`")
    submit.add_argument(
        "--no-wait", action="store_true", help="print the run id and return at once"
    )
    submit.add_argument("--max-retries", type=int, default=3)
    submit.add_argument("--policy", default="binpack", choices=["binpack", "spread", "first_fit"])
    submit.add_argument(
        "--output", help="write the results to FILE (.json: JSON, otherwise a pickle)"
    )
    submit.add_argument("--json", action="store_true", help="print one JSON document")
    nodes = sub.add_parser("nodes", help="list the cluster's nodes")
    nodes.add_argument("--json", action="store_true")
    status = sub.add_parser("status", help="a run's state (or every run of this daemon)")
    status.add_argument("run_id", nargs="?")
    status.add_argument("--json", action="store_true")
    results = sub.add_parser("results", help="a finished run's results")
    results.add_argument("run_id")
    results.add_argument("--json", action="store_true")
    tasks = sub.add_parser("tasks", help="every task's attempts, nodes, times and errors")
    tasks.add_argument("run_id")
    tasks.add_argument("--json", action="store_true")
    dashboard = sub.add_parser("dashboard", help="print the daemon's dashboard URL (with token)")
    dashboard.add_argument("--json", action="store_true")
    cancel = sub.add_parser("cancel", help="cancel a run")
    cancel.add_argument("run_id")
    keygen = sub.add_parser("keygen", help="write a new cluster key file")
    keygen.add_argument("path")
    keygen.add_argument("--force", action="store_true", help="overwrite an existing file")
    return parser


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
        sys.path.remove(directory)
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
    return dag


def _progress_line(status: Any, total: int) -> str:
    counts = status.counts
    done = counts.get("DONE", 0)
    running = counts.get("RUNNING", 0) + counts.get("ASSIGNED", 0)
    failed = counts.get("FAILED", 0)
    queued = max(0, total - done - running - failed - counts.get("CANCELLED", 0))
    width = 30
    filled = int(width * done / total) if total else width
    return (
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} done, {running} running, "
        f"{queued} queued, {failed} failed"
    )


def _status_doc(status: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "run_id": status.run_id,
        "state": status.state,
        "counts": status.counts,
        "owner": status.owner,
        "term": status.term,
        "standbys": list(status.standbys),
    }
    if status.done:
        doc["placement"] = status.placement
    if status.error is not None:
        doc["error"] = {"type": type(status.error).__name__, "message": str(status.error)}
    return doc


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if hasattr(value, "tolist"):
            return _jsonable(value.tolist())
        return repr(value)


def _submit(client: Any, args: argparse.Namespace) -> int:
    dag = load_dag(args.file)
    run = client.submit(dag, max_retries=args.max_retries, policy=args.policy)
    if args.no_wait:
        print(json.dumps({"run_id": run.id, "owner": run.owner}) if args.json else run.id)
        return EXIT_OK
    total = sum(1 for f in dag.functions.values() if getattr(f, "type", "regular") != "inline")
    show_bar = sys.stderr.isatty() and not args.json
    started = time.monotonic()
    failed: errors.HandoffError | None = None
    while True:
        try:
            status = run.wait(0.2 if show_bar else None)
            break
        except errors.Timeout:
            if show_bar:
                sys.stderr.write(_progress_line(run._last or run.status(), total))
                sys.stderr.flush()
        except (errors.TaskFailed, errors.RunCancelled) as exc:
            failed = exc
            status = run._last or run.status()
            break
    if show_bar:
        sys.stderr.write(_progress_line(status, total) + "\n")
    elapsed = time.monotonic() - started
    status = run.status()
    results = run.results() if failed is None else {}
    if args.output and failed is None:
        if args.output.endswith(".json"):
            with open(args.output, "w") as f:
                json.dump({k: _jsonable(v) for k, v in results.items()}, f, indent=1)
        else:
            with open(args.output, "wb") as binary:
                pickle.dump(results, binary)
    if args.json:
        doc = _status_doc(status)
        doc["elapsed_s"] = round(elapsed, 3)
        if failed is None and not args.output:
            doc["results"] = {k: _jsonable(v) for k, v in results.items()}
        print(json.dumps(doc, indent=1))
    else:
        sinks = _sinks(dag)
        _print_summary(status, results, failed, elapsed, show_values=not args.output, sinks=sinks)
    if failed is None:
        run.release()
    return EXIT_RUN_FAILED if failed is not None else EXIT_OK


_LIST_LIMIT = 24


def _sinks(dag: Any) -> list[str]:
    consumed = {dep for f in dag.functions.values() for dep in f.args}
    return sorted(i for i in dag.functions if i not in consumed)


def _print_summary(
    status: Any,
    results: dict[str, Any],
    failed: Exception | None,
    elapsed: float,
    show_values: bool,
    sinks: list[str] | None = None,
) -> None:
    counts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(status.counts.items()) if v)
    print(f"run {status.run_id}: {status.state} in {elapsed:.2f}s ({counts}); owner {status.owner}")
    if failed is not None:
        print(f"  {type(failed).__name__}: {failed}")
        tb = getattr(failed, "traceback", "")
        if tb:
            print("  remote traceback:\n    " + tb.rstrip().replace("\n", "\n    "))
        return
    per_node: dict[str, int] = {}
    for node in status.placement.values():
        per_node[node] = per_node.get(node, 0) + 1
    print("  tasks per node: " + ", ".join(f"{n} {c}" for n, c in sorted(per_node.items())))
    shown = sorted(status.placement)
    if len(shown) > _LIST_LIMIT:
        # A big DAG: list its sinks (what nobody consumes), the run's real outputs.
        shown = [f for f in (sinks or []) if f in status.placement][:_LIST_LIMIT]
        print(f"  {len(status.placement)} functions; showing {len(shown)} sink(s):")
    for function_id in shown:
        line = f"  {function_id:<24} on {status.placement[function_id]}"
        if show_values and function_id in results:
            text = repr(results[function_id])
            line += f"  = {text if len(text) <= 100 else text[:97] + '...'}"
        print(line)


def _nodes(client: Any, args: argparse.Namespace) -> int:
    nodes = client.nodes()
    if args.json:
        doc = {
            "nodes": [
                {
                    "name": n,
                    "address": i.address,
                    "status": i.status,
                    "capacity": i.capacity,
                    "free": i.free,
                }
                for n, i in sorted(nodes.items())
            ]
        }
        print(json.dumps(doc, indent=1))
        return EXIT_OK
    print(f"{'NAME':<28} {'STATUS':<8} {'ADDRESS':<22} CAPACITY / FREE")
    for name, info in sorted(nodes.items()):
        cap = " ".join(
            f"{k}={info.free.get(k, 0):g}/{v:g}" for k, v in sorted(info.capacity.items())
        )
        print(f"{name:<28} {info.status:<8} {info.address:<22} {cap}")
    return EXIT_OK


def _status(client: Any, args: argparse.Namespace) -> int:
    if args.run_id is None:
        runs = client.runs()
        if args.json:
            print(
                json.dumps(
                    {
                        "runs": [
                            {
                                "run_id": r.run_id,
                                "state": r.state,
                                "owner": r.owner,
                                "counts": dict(r.counts),
                            }
                            for r in runs
                        ]
                    },
                    indent=1,
                )
            )
        else:
            for r in runs:
                print(f"{r.run_id}  {r.state:<10} owner {r.owner}  {dict(r.counts)}")
        return EXIT_OK
    status = client.run(args.run_id).status()  # follows the run to its current owner
    if status.state == "UNKNOWN":
        return fail(EXIT_USAGE, f"run {args.run_id} is not known to this cluster")
    if args.json:
        print(json.dumps(_status_doc(status), indent=1))
    else:
        print(
            f"run {status.run_id}: {status.state}; owner {status.owner} (term {status.term}); "
            f"standbys {', '.join(status.standbys) or '-'}"
        )
        print("  " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(status.counts.items())))
        if status.error is not None:
            print(f"  {type(status.error).__name__}: {status.error}")
    return EXIT_RUN_FAILED if status.state in ("FAILED", "CANCELLED") else EXIT_OK


def _results(client: Any, args: argparse.Namespace) -> int:
    run = client.run(args.run_id)
    try:
        results = run.results()
    except (errors.TaskFailed, errors.RunCancelled) as exc:
        return fail(EXIT_RUN_FAILED, str(exc))
    if args.json:
        print(
            json.dumps(
                {"run_id": run.id, "results": {k: _jsonable(v) for k, v in results.items()}},
                indent=1,
            )
        )
    else:
        for key in sorted(results):
            print(f"{key}: {results[key]!r}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "keygen":
        from handoffd.transport.keys import generate_key_file

        try:
            generate_key_file(args.path, force=args.force)
        except (OSError, ValueError, errors.HandoffError) as exc:
            return fail(EXIT_USAGE, str(exc).replace("force=True", "--force"))
        print(
            f"wrote cluster key {args.path}: pass --key-file {args.path} to every node and client"
        )
        return EXIT_OK
    from handoffd.client import Client

    try:
        client = Client(
            args.address,
            key_file=args.key_file,
            timeout=args.timeout,
            allow_local_users=args.allow_local_users,
            insecure=args.insecure,
        )
    except errors.ConnectionError as exc:
        return fail(EXIT_UNREACHABLE, str(exc))
    except (errors.HandoffError, OSError, ValueError) as exc:
        return fail(EXIT_USAGE, str(exc))
    try:
        if args.command == "submit":
            return _submit(client, args)
        if args.command == "nodes":
            return _nodes(client, args)
        if args.command == "status":
            return _status(client, args)
        if args.command == "results":
            return _results(client, args)
        if args.command == "dashboard":
            from handoffd.cli.tasks import dashboard_command

            return dashboard_command(client, args.key_file, args.insecure, args.json)
        if args.command == "tasks":
            from handoffd.cli.tasks import tasks_command

            return tasks_command(client, args.run_id, args.json)
        if args.command == "cancel":
            client.run(args.run_id).cancel()
            print(f"cancelled {args.run_id}")
            return EXIT_OK
    except errors.ConnectionError as exc:  # includes AuthenticationError
        return fail(EXIT_UNREACHABLE, str(exc))
    except (errors.ValidationError, errors.Unschedulable) as exc:
        return fail(EXIT_USAGE, str(exc))
    except (errors.TaskFailed, errors.RunCancelled) as exc:
        return fail(EXIT_RUN_FAILED, str(exc))
    except errors.HandoffError as exc:
        return fail(EXIT_RUN_FAILED, str(exc))
    finally:
        client.close()
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

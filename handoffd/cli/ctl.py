"""``handoffctl``: submit DAG files, watch runs, list nodes, make keys.

Exit codes (the contract): 0 success; 1 the run failed or was cancelled; 2 usage or validation
error (bad flags, bad dag.py, unschedulable cost); 3 cannot reach or authenticate to the daemon;
130 interrupted (Ctrl-C); 141 stdout closed by its reader (``| head -1``).

Adding a subcommand (see docs/architecture.md, "The command line"): put its logic in a module of
its own (a function of plain arguments returning an exit code), then register it here with
``@command(...)`` (``connect=True`` hands it a connected Client as its first argument).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from handoffd import __version__, errors
from handoffd.cli import ctl_ops, ctl_submit, ctl_views, settings
from handoffd.cli.app import (
    CONTEXT_SETTINGS,
    Group,
    apply_options,
    error,
    run_cli,
    setting,
    shared_option,
    warn,
)
from handoffd.cli.common import EXIT_RUN_FAILED, EXIT_UNREACHABLE, EXIT_USAGE

# Accepted before and after the subcommand (handoffd.cli.app.shared_option).
connection_options = apply_options(
    shared_option(
        "--address",
        metavar="HOST:PORT",
        help="the daemon to talk to (default 127.0.0.1:7788)",
    ),
    shared_option(
        "--key-file",
        metavar="PATH",
        help="cluster key file (when the cluster uses one; default: your local key, which your "
        "keyless daemons hold)",
    ),
    shared_option(
        "--allow-local-users",
        is_flag=True,
        default=False,
        help="connect without authentication: to a daemon started with --allow-local-users; "
        "nothing proves who answers",
    ),
    shared_option(
        "--insecure",
        is_flag=True,
        default=False,
        help="use a key file other users can read (with a warning)",
    ),
    shared_option(
        "--timeout",
        type=float,
        default=5.0,
        show_default=True,
        metavar="SECONDS",
        help="seconds to wait for the daemon to answer",
    ),
)
config_option = settings.config_option("client")
json_option = shared_option(
    "--json", "as_json", is_flag=True, default=False, help="print one JSON document on stdout"
)


@click.group(cls=Group, context_settings=CONTEXT_SETTINGS)
@config_option
@connection_options
@json_option
@click.version_option(__version__, "--version", "-V", prog_name="handoffctl")
def cli() -> None:
    """Control a handoffd cluster: submit DAGs, watch runs, list nodes, make keys.

    Options may come before or after the subcommand. Exit codes: 0 success, 1 the run failed
    or was cancelled, 2 usage or validation error, 3 daemon unreachable or authentication
    failed, 130 interrupted."""


def _open_client(ctx: click.Context) -> Any:
    from handoffd.client import Client

    return Client(
        setting(ctx, "address"),
        key_file=setting(ctx, "key_file"),
        timeout=setting(ctx, "timeout"),
        allow_local_users=setting(ctx, "allow_local_users"),
        insecure=setting(ctx, "insecure"),
    )


def _with_client(ctx: click.Context, body: Callable[[Any], int]) -> int:
    """Connect, call ``body(client)``, close; the library's errors become exit codes."""
    try:
        client = _open_client(ctx)
    except errors.ConnectionError as exc:
        return error(EXIT_UNREACHABLE, str(exc))
    except (errors.HandoffError, OSError, ValueError) as exc:
        return error(EXIT_USAGE, str(exc))
    try:
        return body(client)
    except errors.ConnectionError as exc:  # includes AuthenticationError
        return error(EXIT_UNREACHABLE, str(exc))
    except (errors.ValidationError, errors.Unschedulable, errors.UnknownRun) as exc:
        return error(EXIT_USAGE, str(exc))
    except (errors.TaskFailed, errors.RunCancelled) as exc:
        return error(EXIT_RUN_FAILED, str(exc))
    except errors.HandoffError as exc:
        return error(EXIT_RUN_FAILED, str(exc))
    finally:
        client.close()


def command(
    name: str, *, connect: bool = True, **attrs: Any
) -> Callable[[Callable[..., int]], click.Command]:
    """Register ``f`` as ``handoffctl NAME``. ``f`` receives, as keywords, its own click
    parameters and ``as_json``; with ``connect`` its first argument is a connected Client (closed
    after; connection and library errors become exit codes 3, 2, 1). It returns an exit code."""

    def register(f: Callable[..., int]) -> click.Command:
        @functools.wraps(f)
        def invoke(**kwargs: Any) -> int:
            ctx = click.get_current_context()
            kwargs["as_json"] = bool(setting(ctx, "as_json"))
            if connect:
                return _with_client(ctx, lambda client: f(client, **kwargs))
            return f(**kwargs)

        invoke.__click_params__ = list(getattr(f, "__click_params__", []))  # type: ignore[attr-defined]
        cmd = click.command(name, context_settings=CONTEXT_SETTINGS, **attrs)(
            config_option(connection_options(json_option(invoke)))
        )
        cli.add_command(cmd)
        return cmd

    return register


@command("submit", help="Run the DAG defined in a Python file (`dag` or `build_dag()`).")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--no-wait", is_flag=True, help="print the run id and return at once")
@click.option(
    "--max-retries",
    type=int,
    default=3,
    show_default=True,
    help="times a failing function is retried before the run fails",
)
@click.option(
    "--policy",
    type=click.Choice(["binpack", "spread", "first_fit"]),
    default="binpack",
    show_default=True,
    help="placement: pack nodes full, spread over nodes, or the first that fits",
)
@click.option(
    "--output",
    metavar="FILE",
    help="write the results to FILE (.json: JSON, otherwise a pickle)",
)
@click.option(
    "--outputs",
    metavar="ID,ID,...",
    help="the functions whose values to fetch and show (default: the DAG's sinks; with "
    "--output FILE, every function's)",
)
@click.option(
    "--working-dir",
    metavar="DIR",
    help="ship this directory with the run, on sys.path in its workers (the modules the "
    "dag.py imports from beside it are shipped anyway)",
)
@click.option(
    "--py-module",
    multiple=True,
    metavar="PATH_OR_NAME",
    help="ship this package, .py file or importable module with the run (repeatable)",
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="do not show what the tasks print and log (`handoffctl logs RUN` shows it later)",
)
def _submit(client: Any, **kw: Any) -> int:
    return ctl_submit.submit(client, **kw)


@command(
    "nodes",
    help="List the cluster's nodes: status, address, version, uptime, free and total resources, "
    "and what each noticed about its peers (warning lines).",
)
def _nodes(client: Any, *, as_json: bool) -> int:
    return ctl_ops.nodes(client, as_json=as_json)


@command(
    "runs",
    help="Every run in the cluster (each node asked for the runs it owns; a run whose owner is "
    "changing, from a replica, marked so).",
)
def _runs(client: Any, *, as_json: bool) -> int:
    return ctl_ops.runs(client, as_json=as_json)


_WAIT = click.option(
    "--wait/--no-wait", default=True, show_default=True, help="return once the node has left"
)


@command(
    "drain",
    help="Drain NODE: no new tasks there, running ones finish (for at most --drain-timeout), "
    "then it leaves the cluster and its daemon exits. Needs the cluster's key.",
)
@click.argument("node")
@click.option(
    "--drain-timeout",
    type=float,
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="longest the node waits for its running tasks before handing them back",
)
@_WAIT
def _drain(client: Any, *, node: str, drain_timeout: float, wait: bool, as_json: bool) -> int:
    return ctl_ops.leave(
        client, node, drain=True, timeout=drain_timeout, wait=wait, as_json=as_json
    )


@command(
    "stop",
    help="Stop NODE (any node of the cluster, not only this machine's): it drains for its own "
    "grace period (10 s by default), leaves and exits. Needs the cluster's key.",
)
@click.argument("node")
@_WAIT
def _stop(client: Any, *, node: str, wait: bool, as_json: bool) -> int:
    return ctl_ops.leave(client, node, drain=False, timeout=None, wait=wait, as_json=as_json)


@command(
    "status",
    help="A run's state; without RUN_ID, every run the daemon owns. While the run's owner "
    "changes (a takeover), the state as last replicated to the node asked, marked 'owner "
    "changing' (--json: owner_changing, next_owner).",
)
@click.argument("run_id", required=False)
def _status(client: Any, *, run_id: str | None, as_json: bool) -> int:
    if run_id is None:
        return ctl_views.run_list(client, as_json=as_json)
    return ctl_views.run_status(client, run_id, as_json=as_json)


@command("results", help="A finished run's results.")
@click.argument("run_id")
def _results(client: Any, *, run_id: str, as_json: bool) -> int:
    return ctl_views.results(client, run_id, as_json=as_json)


@command("cancel", help="Cancel a run (its running tasks are stopped, its values freed).")
@click.argument("run_id")
def _cancel(client: Any, *, run_id: str, as_json: bool) -> int:
    return ctl_views.cancel(client, run_id, as_json=as_json)


@command("logs", help="What a run's tasks printed and logged, each line prefixed [task@node].")
@click.argument("run_id")
@click.argument("task", required=False)
@click.option("--follow", "-f", is_flag=True, help="keep printing new output until the run ends")
def _logs(client: Any, *, run_id: str, task: str | None, follow: bool, as_json: bool) -> int:
    from handoffd.cli.logs import logs_command

    return logs_command(client, run_id, task, follow, as_json)


@command("keygen", connect=False, help="Write a new cluster key file (never overwrites one).")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="overwrite an existing file")
def _keygen(*, path: str, force: bool, as_json: bool) -> int:
    return ctl_views.keygen(path, force=force, as_json=as_json)


@command("tasks", help="Every task's attempts: node, worker pid, times, errors (issue 16).")
@click.argument("run_id")
def _tasks(client: Any, *, run_id: str, as_json: bool) -> int:
    from handoffd.cli.tasks import tasks_command

    return tasks_command(client, run_id, as_json)


@command("dashboard", help="Print the daemon's dashboard URL, with its token (/metrics too).")
def _dashboard(client: Any, *, as_json: bool) -> int:
    from handoffd.cli.tasks import dashboard_command

    ctx = click.get_current_context()
    return dashboard_command(
        client, setting(ctx, "key_file"), bool(setting(ctx, "insecure")), as_json
    )


def prepare() -> None:
    """Read the deprecated HANDOFF_* names; name every option's HANDOFFD_* variable (after every
    command was registered)."""
    from handoffd import envvars

    envvars.adopt_legacy(report=warn)
    settings.name_envvars(cli)


def main(argv: Sequence[str] | None = None) -> int:
    prepare()
    return run_cli(cli, argv, "handoffctl")


if __name__ == "__main__":
    sys.exit(main())

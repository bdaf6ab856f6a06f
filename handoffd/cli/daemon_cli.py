"""The click definition of ``handoffd`` (``start``, ``stop``). Imported only by
``handoffd.cli.daemon.main``: the daemon's worker processes re-run that module and must not load
click (see its docstring). What the commands do lives in ``handoffd.cli.daemon``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import click

from handoffd import __version__
from handoffd.cli import daemon_run, settings
from handoffd.cli.app import CONTEXT_SETTINGS, Group, setting, shared_option
from handoffd.config import DEFAULT_CLUSTER, DEFAULT_HOST, DEFAULT_PORT, TIMING_PRESETS

json_option = shared_option(
    "--json",
    "as_json",
    is_flag=True,
    default=False,
    help="print JSON on stdout (start: one line when listening; stop: one document)",
)

# [daemon] stop-timeout in the config file is `handoffd stop --timeout` (HANDOFFD_STOP_TIMEOUT):
# `timeout` alone would read as handoffctl's.
config_option = settings.config_option("daemon", renames={"stop": {"stop_timeout": "timeout"}})
# The daemon's two switches that lower its authentication never come from a variable a user sets
# for their clients (HANDOFFD_ALLOW_LOCAL_USERS, HANDOFFD_INSECURE: "connect without a key"): a
# shell that exports one to reach another daemon must not start its own daemon open to every local
# user. Each has a daemon-only name.
ENV_RENAMES = {
    "stop.timeout": "HANDOFFD_STOP_TIMEOUT",
    "start.allow_local_users": "HANDOFFD_DAEMON_ALLOW_LOCAL_USERS",
    "start.insecure": "HANDOFFD_DAEMON_INSECURE",
}


def _watch_target(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """``--die-with-parent``'s syntax, checked while parsing (usage error, exit 2); whether the
    descriptor or process can be watched is checked by ``daemon_run.start``. A descriptor number
    or pid means something only to the process that was handed it, so neither an environment
    variable (every process below would inherit it) nor a config file may set it."""
    from click.core import ParameterSource

    from handoffd.daemon.watchdog import WatchError, parse

    if value is None:
        return None
    assert param.name is not None
    if ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
        raise click.BadParameter("only the command line sets it, not a config file", ctx, param)
    try:
        return parse(value)
    except WatchError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@click.group(cls=Group, context_settings=CONTEXT_SETTINGS)
@config_option
@json_option
@click.version_option(__version__, "--version", "-V", prog_name="handoffd")
def cli() -> None:
    """The handoffd cluster daemon: `start` one on each machine, `stop` a local one.

    Options may come before or after the subcommand."""


@cli.command("start", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--cpu",
    type=float,
    help="cpu capacity (default: what this process may use: affinity, cgroup quota, cores)",
)
@click.option(
    "--memory",
    type=float,
    metavar="MB",
    help="memory capacity in MB (default: the cgroup's limit, else physical memory)",
)
@click.option(
    "--gpu",
    type=float,
    help="GPUs (default: detected through NVML or /proc/driver/nvidia, else 0); with "
    "CUDA_VISIBLE_DEVICES set, the devices it names are the ones handed out",
)
@click.option(
    "--resource",
    "resources",
    multiple=True,
    metavar="NAME=QTY",
    help="a custom resource kind, e.g. --resource fpga=2 (repeatable)",
)
@click.option("--name", help="unique node name (default: HOSTNAME-HOST-PORT)")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="address to listen on")
@click.option(
    "--port", type=int, default=DEFAULT_PORT, show_default=True, help="port (0 = any free port)"
)
@click.option(
    "--seed",
    "seeds",
    multiple=True,
    metavar="HOST:PORT",
    help="a peer to join (repeatable; HOST:PORT,HOST:PORT also works)",
)
@click.option("--no-mdns", is_flag=True, help="do not use mDNS discovery")
@click.option(
    "--cluster",
    default=DEFAULT_CLUSTER,
    show_default=True,
    help="cluster name; nodes of other clusters are ignored",
)
@click.option(
    "--key-file",
    metavar="PATH",
    help="cluster key (handoffctl keygen): encrypt and authenticate every socket (without "
    "one: your local key, in the runtime dir, so only you can connect)",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="allow a non-loopback --host without a key (anyone who can connect can run code), "
    "and a key file other users can read (with a warning)",
)
@click.option(
    "--allow-local-users",
    is_flag=True,
    help="no key and no local key: ANY user of this machine can connect, run code as you, "
    "stop the daemon or impersonate it (clients must pass --allow-local-users too)",
)
@click.option("--replicas", type=int, default=2, show_default=True, help="standby owners per run")
@click.option("--max-workers", type=int, help="worker processes (default: the cpu capacity)")
@click.option(
    "--memory-enforce",
    type=click.Choice(["kill", "off"]),
    default="kill",
    show_default=True,
    help="kill: a task holding more memory than it declared (undeclared: than the node has) is "
    "killed and fails with MemoryExceeded; off: memory is bookkeeping only",
)
@click.option(
    "--recycle-gpu-workers",
    is_flag=True,
    help="start a fresh worker process after each chain of GPU tasks",
)
@click.option(
    "--warm-gpu-workers/--no-warm-gpu-workers",
    default=True,
    show_default=True,
    help="keep a worker process started for each GPU (beyond --max-workers), so a GPU task "
    "never waits for one to start",
)
@click.option(
    "--store-memory",
    type=float,
    default=1024.0,
    show_default=True,
    metavar="MB",
    help="result store memory before values spill to disk",
)
@click.option("--spill-dir", help="where spilled values go (default: the system temp dir)")
@click.option(
    "--result-retention",
    type=float,
    default=600.0,
    show_default=True,
    metavar="SECONDS",
    help="free a finished run's values after this long if no client collected them",
)
@click.option(
    "--timings",
    type=click.Choice(TIMING_PRESETS),
    default="lan",
    show_default=True,
    help="membership and dispatch timings: lan (~1 s crash detection), wan (round trips up to "
    "~300 ms), loaded (busy machines); single values in the config file's [timings]",
)
@click.option(
    "--limit",
    "limits",
    multiple=True,
    metavar="NAME=VALUE",
    help="a bound on what a client or peer can make this daemon hold, e.g. "
    "max_tasks_per_run=1000000 (repeatable; docs/limits.md)",
)
@click.option(
    "--http-port",
    type=int,
    metavar="PORT",
    help="metrics (/metrics) and dashboard (/) on this port of --host (default: --port + 1, "
    "skipped with a warning if taken; 0 = no HTTP)",
)
@click.option(
    "--log-file",
    metavar="PATH",
    help="also write the log to PATH, rotated past --log-max-mb (keeps --log-backups files)",
)
@click.option("--log-max-mb", type=float, default=50.0, show_default=True, help="rotate past this")
@click.option("--log-backups", type=int, default=5, show_default=True, help="rotated files kept")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--die-with-parent",
    metavar="fd:N|pid:N",
    callback=_watch_target,
    help="for launchers (benches, tests, scripts): leave the cluster and exit when the launching "
    "process ends, however it ends. fd:N: the read end of a pipe whose write end only the "
    "launcher keeps, passed to this process as descriptor N; pid:N: the launcher's process id. "
    "A leave that overruns the drain grace by 30 s ends in an exit (status 1). Command line "
    "only (no variable, no config key): a daemon never dies with its shell unless asked",
)
@config_option
@json_option
def _start(**kwargs: Any) -> int:
    """Run a daemon in the foreground (stop it with Ctrl-C, SIGTERM or `handoffd stop`)."""
    ctx = click.get_current_context()
    kwargs["resources"] = list(kwargs["resources"])
    kwargs["seeds"] = list(kwargs["seeds"])
    kwargs["limits"] = list(kwargs["limits"])
    sections, path = settings.loaded(ctx)
    kwargs["timing_overrides"] = sections.get("timings", {})
    kwargs["timing_source"] = f"[timings] of {path}"
    return daemon_run.start(SimpleNamespace(**kwargs), as_json=bool(setting(ctx, "as_json")))


@cli.command("stop", context_settings=CONTEXT_SETTINGS)
@click.option("--name", help="the daemon's node name (default: the only one running)")
@click.option(
    "--timeout",
    type=float,
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="seconds to wait for it to exit",
)
@config_option
@json_option
def _stop(name: str | None, timeout: float) -> int:
    """Drain and stop a daemon started on this machine."""
    ctx = click.get_current_context()
    return daemon_run.stop(
        SimpleNamespace(name=name, timeout=timeout), as_json=bool(setting(ctx, "as_json"))
    )


@cli.command("config", context_settings=CONTEXT_SETTINGS)
@config_option
@json_option
def _config() -> int:
    """Print the effective configuration and where each value comes from (flag, environment,
    config file, default)."""
    from handoffd.cli import config_view

    ctx = click.get_current_context()
    return config_view.show(ctx, cli.commands["start"], as_json=bool(setting(ctx, "as_json")))


settings.name_envvars(cli, ENV_RENAMES)
for _param in _start.params:  # command line only (see _watch_target)
    if isinstance(_param, click.Option) and _param.name == "die_with_parent":
        _param.envvar, _param.show_envvar = None, False

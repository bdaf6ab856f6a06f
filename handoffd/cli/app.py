"""The click and rich plumbing both commands share.

- ``shared_option``: an option accepted before AND after the subcommand (``handoffctl status X
  --address A`` and ``handoffctl --address A status X``). It is declared on the group and on every
  subcommand; the value with the strongest source wins (command line > environment > config file >
  default; between two command-line values, the later one, i.e. the subcommand's). Read it with
  ``setting(ctx, name)``.
- ``run_cli``: runs a click group as a program: exit codes are the commands' return values, usage
  errors exit 2 (as argparse did), Ctrl-C exits 130 without a traceback, a closed stdout (``| head
  -1``) exits 141 without a traceback (the code a shell reports for a process killed by SIGPIPE).
- ``out_console`` / ``err_console``: rich consoles; colour only on a terminal, ``NO_COLOR``
  honoured (rich reads it), no wrapping of plain lines, tables as wide as their content when the
  output is not a terminal (so ``grep`` sees whole lines).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from handoffd.cli.common import EXIT_USAGE

F = TypeVar("F", bound=Callable[..., Any])

EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE

_SETTINGS = "handoffd.settings"
_RANK = {
    ParameterSource.DEFAULT: 0,
    ParameterSource.DEFAULT_MAP: 1,
    ParameterSource.ENVIRONMENT: 2,
    ParameterSource.PROMPT: 3,
    ParameterSource.COMMANDLINE: 3,
}
CONTEXT_SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
}


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    assert param.name is not None
    store: dict[str, tuple[int, Any]] = ctx.find_root().meta.setdefault(_SETTINGS, {})
    source = ctx.get_parameter_source(param.name)
    rank = _RANK.get(source, 0) if source is not None else 0
    old = store.get(param.name)
    if old is None or rank >= old[0]:
        store[param.name] = (rank, value)
    return value


def shared_option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """A click option for the group and each subcommand; its value is read with ``setting``."""
    attrs.setdefault("expose_value", False)
    return click.option(*decls, callback=_remember, **attrs)


def setting(ctx: click.Context, name: str) -> Any:
    """The effective value of a ``shared_option`` (see the module docstring for precedence)."""
    store = ctx.find_root().meta.get(_SETTINGS, {})
    return store[name][1] if name in store else None


def source_rank(ctx: click.Context, name: str) -> int:
    """How a shared option got its value: 0 default, 1 config file, 2 environment, 3 flag."""
    store = ctx.find_root().meta.get(_SETTINGS, {})
    return store[name][0] if name in store else 0


def apply_options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Apply several option decorators in the order they are listed (as ``--help`` shows them)."""

    def wrap(f: F) -> F:
        for decorate in reversed(decorators):
            f = decorate(f)
        return f

    return wrap


class StdoutClosed(Exception):
    """The reader of stdout went away (``| head -1``). Not an OSError, so click's own handler
    (which exits 1, the code of a failed run here) lets it through to ``run_cli``."""


class Group(click.Group):
    """The group class of both commands: a closed stdout becomes ``StdoutClosed``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise StdoutClosed() from exc


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: the reader is gone, and the interpreter's final flush must not
    raise a second BrokenPipeError (Python's documented recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run_cli(group: click.Group, argv: Sequence[str] | None, prog_name: str) -> int:
    """Run ``group`` as the program ``prog_name`` and return its exit code (see module doc)."""
    try:
        try:
            code = group.main(
                args=list(argv) if argv is not None else None,
                prog_name=prog_name,
                standalone_mode=False,
            )
            sys.stdout.flush()
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code if exc.exit_code else EXIT_USAGE
        except click.Abort:  # click turns a KeyboardInterrupt into Abort
            code = EXIT_INTERRUPTED
        except (StdoutClosed, BrokenPipeError):
            raise
        except Exception:  # a bug: its traceback (rich's, plain when not a terminal), exit 1
            err_console().print_exception()
            code = 1
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        code = EXIT_INTERRUPTED
    except (BrokenPipeError, StdoutClosed):
        _quiet_stdout()
        code = EXIT_BROKEN_PIPE
    return int(code or 0)


def _terminal_width(stream: Any) -> int | None:
    """None (rich asks the terminal) on a terminal; otherwise wide enough that piped output is
    never cut or folded (COLUMNS is ignored then: it describes a terminal that is not there)."""
    try:
        if stream.isatty():
            return None
    except (AttributeError, ValueError):
        pass
    return 1000


def _console(stderr: bool) -> Any:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich exits 1 here (our "run failed"); run_cli exits 141 instead.
            self.quiet = True
            raise StdoutClosed()

    stream = sys.stderr if stderr else sys.stdout
    return _Console(stderr=stderr, soft_wrap=True, highlight=False, width=_terminal_width(stream))


def out_console() -> Any:
    """A rich console on stdout."""
    return _console(stderr=False)


def err_console() -> Any:
    """A rich console on stderr (progress, errors)."""
    return _console(stderr=True)


def print_json(doc: Any) -> None:
    """One JSON document on stdout (plain, never coloured: a program reads it)."""
    import json

    sys.stdout.write(json.dumps(doc, indent=1) + "\n")


def warn(message: str) -> None:
    """``warning: MESSAGE`` on stderr (yellow on a terminal)."""
    from rich.text import Text

    err_console().print(Text("warning: ", style="bold yellow") + Text(message))


def error(code: int, message: str) -> int:
    """``error: MESSAGE`` on stderr (red on a terminal); returns ``code``."""
    from rich.text import Text

    err_console().print(Text("error: ", style="bold red") + Text(message))
    return code

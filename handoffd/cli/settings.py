"""Where the commands' settings come from: flag > environment (``HANDOFFD_*``) > config file >
default.

Flags and the environment are click's (every option has ``envvar`` ``HANDOFFD_<NAME>``, set by
``name_envvars``). The config file is TOML, ``--config PATH`` (or ``HANDOFFD_CONFIG``), by default
``config.toml`` in the user's config directory (platformdirs: ``~/.config/handoffd/`` on Linux);
a missing default file is no error, a missing named one is. Its sections:

    [daemon]     options of `handoffd start` (and `stop-timeout` for `handoffd stop`)
    [client]     options of `handoffctl` (every subcommand)
    [timings]    membership and dispatch timings: `preset` ("lan", "wan", "loaded") and fields

Keys are option names with ``-`` or ``_``. The file becomes click's ``default_map`` (which click
consults after the command line and the environment, before the default), so the precedence is
click's own. An unknown section or key is an error naming the file, the key and the known ones.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import click

from handoffd import envvars

SECTIONS = ("daemon", "client", "timings")


class ConfigError(click.ClickException):
    """A config file that cannot be used; exits 2 (a usage error) with the message."""

    exit_code = 2

    def format_message(self) -> str:
        return self.message


def default_path() -> Path:
    """``config.toml`` in the user's config directory."""
    import platformdirs

    return Path(platformdirs.user_config_path("handoffd")) / "config.toml"


def load(path: str | None) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The file's sections (keys normalised to ``_``) and the path read (None if none was)."""
    explicit = path is not None
    target = Path(os.path.expanduser(path)) if path is not None else default_path()
    try:
        with open(target, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {target}: no such file") from None
        return {}, None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {target}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"config file {target}: cannot read it ({exc.strerror})") from None
    sections: dict[str, dict[str, Any]] = {}
    for section, body in doc.items():
        if section not in SECTIONS or not isinstance(body, dict):
            raise ConfigError(
                f"config file {target}: unknown top-level entry {section!r}; settings go in the "
                f"sections {', '.join(f'[{s}]' for s in SECTIONS)}"
            )
        sections[section] = {key.replace("-", "_"): value for key, value in body.items()}
    return sections, str(target)


def _option_names(command: click.Command) -> set[str]:
    return {
        p.name
        for p in command.params
        if isinstance(p, click.Option) and p.name and p.name not in ("help", "version", "config")
    }


def _plain(key: str, value: Any) -> Any:
    """A TOML value as click expects it: ``~`` expanded in paths; a table of resources as
    ``NAME=QTY`` strings."""
    if isinstance(value, dict) and key == "resources":
        return [f"{k}={v}" for k, v in value.items()]
    if isinstance(value, str) and key in ("key_file", "spill_dir"):
        return os.path.expanduser(value)
    return value


def default_map(
    group: click.Group,
    section: dict[str, Any],
    where: str,
    renames: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """click's ``default_map`` for ``group`` from one config section: the group's own options at
    the top, each subcommand's under its name. ``renames[command]`` maps a file key to an option
    name (``stop-timeout`` -> ``stop``'s ``timeout``). Unknown keys raise ConfigError."""
    renames = renames or {}
    known = set(_option_names(group))
    mapping: dict[str, Any] = {k: _plain(k, v) for k, v in section.items() if k in known}
    for name, command in group.commands.items():
        names = _option_names(command)
        mine = {k: _plain(k, v) for k, v in section.items() if k in names}
        for key, option in renames.get(name, {}).items():
            if key in section:
                mine[option] = _plain(option, section[key])
                known.add(key)
        known |= names
        mapping[name] = mine
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return mapping


def name_envvars(
    command: click.Command, renames: dict[str, str] | None = None, _path: str = ""
) -> None:
    """Give each option of ``command`` and of its subcommands the environment variable
    ``HANDOFFD_<NAME>``, or the one ``renames["SUBCOMMAND.NAME"]`` names, shown in ``--help``."""
    renames = renames or {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name and param.name not in ("help", "version"):
            plain = _ENV_NAMES.get(param.name, param.name)
            param.envvar = renames.get(f"{_path}{param.name}") or envvars.name(plain)
            param.show_envvar = True
    if isinstance(command, click.Group):
        for sub_name, sub in command.commands.items():
            name_envvars(sub, renames, f"{sub_name}.")


CONFIG_META = "handoffd.config"
_ENV_NAMES = {"as_json": "json"}  # parameter names that are not the option's name


def config_option(section: str, renames: dict[str, dict[str, str]] | None = None) -> Any:
    """``--config PATH`` for a group and its subcommands: read the file (or the default one) and
    make its ``[section]`` click's ``default_map``. On a subcommand only an explicit ``--config``
    (flag or HANDOFFD_CONFIG) reloads."""
    from click.core import ParameterSource

    def load_into(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        assert param.name is not None
        source = ctx.get_parameter_source(param.name)
        if ctx.parent is not None and source not in (
            ParameterSource.COMMANDLINE,
            ParameterSource.ENVIRONMENT,
        ):
            return value
        if ctx.resilient_parsing:  # shell completion: never fail on the file
            return value
        root = ctx.find_root()
        sections, path = load(value)
        root.meta[CONFIG_META] = (sections, path)
        assert isinstance(root.command, click.Group)
        full = default_map(
            root.command, sections.get(section, {}), f"[{section}] of {path}", renames
        )
        root.default_map = full  # what is parsed later (handoffd config's views) sees it too
        if ctx is not root:
            ctx.default_map = full.get(ctx.info_name or "", {})
        return value

    return click.option(
        "--config",
        metavar="PATH",
        is_eager=True,
        expose_value=False,
        callback=load_into,
        help=f"TOML config file (default: {default_path()}; settings in [{section}])",
    )


def loaded(ctx: click.Context) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The config file's sections and path, as the ``--config`` option read them."""
    found: tuple[dict[str, dict[str, Any]], str | None] = ctx.find_root().meta.get(
        CONFIG_META, ({}, None)
    )
    return found


def source_name(ctx: click.Context, param: click.Parameter, config_path: str | None) -> str:
    """Where a parameter's value came from, for ``handoffd config``."""
    from click.core import ParameterSource

    assert param.name is not None
    source = ctx.get_parameter_source(param.name)
    if source is ParameterSource.COMMANDLINE:
        return "flag"
    if source is ParameterSource.ENVIRONMENT:
        envvar = param.envvar if isinstance(param.envvar, str) else "environment"
        return f"env {envvar}"
    if source is ParameterSource.DEFAULT_MAP:
        return f"file {config_path}"
    return "default"

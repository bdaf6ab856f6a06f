"""``handoffd config``: every setting of ``handoffd start`` ([daemon]), of ``handoffctl``
([client]) and the timings ([timings]), each with its effective value and where it came from."""

from __future__ import annotations

from typing import Any

import click

from handoffd.cli import settings
from handoffd.cli.app import out_console, print_json
from handoffd.cli.common import EXIT_OK

_SKIP = {"help", "version", "config", "as_json"}


def _resolve(command: click.Command, args: list[str], **kw: Any) -> dict[str, dict[str, Any]]:
    """Parse ``args`` for ``command`` as click would and report each option's value and source."""
    with command.make_context(command.name, list(args), **kw) as sub:
        _, path = settings.loaded(sub)
        out: dict[str, dict[str, Any]] = {}
        for param in command.params:
            if not isinstance(param, click.Option) or not param.name or param.name in _SKIP:
                continue
            value = sub.params.get(param.name)
            if value is None and param.expose_value is False:
                from handoffd.cli.app import setting

                value = setting(sub, param.name)
            if isinstance(value, tuple):
                value = list(value)
            out[param.name.replace("_", "-")] = {
                "value": value,
                "source": settings.source_name(sub, param, path),
            }
        return out


def effective(ctx: click.Context, start: click.Command) -> dict[str, Any]:
    """The effective configuration as one document (``start``: the `handoffd start` command)."""
    from handoffd.cli import ctl

    sections, path = settings.loaded(ctx)
    daemon = _resolve(start, [], parent=ctx.find_root())
    # handoffctl's settings are its group's options, parsed with the same file (and the same
    # HANDOFFD_* variables); "nodes" only stands for a subcommand, which is not run.
    ctl.prepare()
    client = _resolve(ctl.cli, [*(["--config", path] if path else []), "nodes"])
    return {
        "config_file": path,
        "default_config_file": str(settings.default_path()),
        "daemon": daemon,
        "client": client,
        "timings": _timings(daemon["timings"]["value"], sections.get("timings", {}), path),
    }


def _timings(preset: str, overrides: dict[str, Any], path: str | None) -> dict[str, Any]:
    """Each membership and dispatch timing, from the preset or the file's [timings]."""
    import dataclasses

    from handoffd.config import timings

    try:
        membership, dispatch = timings(preset, overrides)
    except ValueError as exc:
        raise settings.ConfigError(f"[timings] of {path}: {exc}") from None
    out: dict[str, Any] = {}
    for part in (membership, dispatch):
        for f in dataclasses.fields(part):
            source = f"file {path}" if f.name in overrides else f"preset {preset}"
            out[f.name.replace("_", "-")] = {"value": getattr(part, f.name), "source": source}
    return out


def show(ctx: click.Context, start: click.Command, *, as_json: bool) -> int:
    doc = effective(ctx, start)
    if as_json:
        print_json(doc)
        return EXIT_OK
    from rich.table import Table
    from rich.text import Text

    out = out_console()
    out.print(
        Text(f"config file: {doc['config_file'] or 'none'} (default {doc['default_config_file']})")
    )
    for section in ("daemon", "client", "timings"):
        out.print(Text(f"\n[{section}]", style="bold"))
        table = Table(box=None, pad_edge=False)
        table.add_column("SETTING", no_wrap=True)
        table.add_column("VALUE", overflow="fold")
        table.add_column("SOURCE", overflow="fold")
        for key, item in doc[section].items():
            value = item["value"]
            shown = "-" if value is None or value == [] else str(value)
            table.add_row(Text(key), Text(shown), Text(item["source"]))
        out.print(table)
    return EXIT_OK

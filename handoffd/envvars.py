"""The one environment prefix, ``HANDOFFD_``, and the deprecated ``HANDOFF_`` names it replaced.

Every setting read from the environment is ``HANDOFFD_<NAME>``. Three were once read as
``HANDOFF_<NAME>`` (``ADDRESS``, ``KEY_FILE``, ``SEEDS``): those still work when the new name is
unset, with a ``FutureWarning`` (shown to users by default) once per name and process.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, MutableMapping

PREFIX = "HANDOFFD_"
LEGACY_PREFIX = "HANDOFF_"
#: Names once read with the legacy prefix.
LEGACY_NAMES = ("ADDRESS", "KEY_FILE", "SEEDS")

_warned: set[str] = set()


def name(setting: str) -> str:
    """The environment variable of a setting: ``key_file`` -> ``HANDOFFD_KEY_FILE``."""
    return PREFIX + setting.upper().replace("-", "_")


def deprecation(key: str) -> str:
    return (
        f"{LEGACY_PREFIX}{key} is deprecated: set {PREFIX}{key} instead "
        f"(every handoffd setting now uses the {PREFIX} prefix)"
    )


def _warn_legacy(key: str, report: Callable[[str], None] | None = None) -> None:
    if key in _warned:
        return
    _warned.add(key)
    if report is not None:
        report(deprecation(key))
    else:
        warnings.warn(deprecation(key), FutureWarning, stacklevel=3)


def get(key: str, environ: MutableMapping[str, str] | None = None) -> str | None:
    """``HANDOFFD_<KEY>``, else the deprecated ``HANDOFF_<KEY>`` (warned once), else None."""
    env = os.environ if environ is None else environ
    key = key.upper()
    value = env.get(PREFIX + key)
    if value is not None:
        return value
    if key in LEGACY_NAMES and LEGACY_PREFIX + key in env:
        _warn_legacy(key)
        return env[LEGACY_PREFIX + key]
    return None


def adopt_legacy(
    environ: MutableMapping[str, str] | None = None,
    report: Callable[[str], None] | None = None,
) -> list[str]:
    """Copy each set legacy ``HANDOFF_<NAME>`` to ``HANDOFFD_<NAME>`` where that is unset (so
    the command line's options, which read only the new names, see it), warning once per name
    (through ``report`` if given, else a FutureWarning). Returns the names adopted."""
    env = os.environ if environ is None else environ
    adopted = []
    for key in LEGACY_NAMES:
        if LEGACY_PREFIX + key in env and PREFIX + key not in env:
            _warn_legacy(key, report)
            env[PREFIX + key] = env[LEGACY_PREFIX + key]
            adopted.append(key)
    return adopted

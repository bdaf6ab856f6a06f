"""Resource vectors: a dict of kind -> non-negative quantity (cpu, memory in MB, gpu, custom kinds).

Pure functions only. ``fits`` and ``kinds`` are the placement core's own (``handoffd._core.api``),
so the owner, the core and the executing node's ledger share one test of "it fits" and its one
tolerance ``EPS``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from handoffd._core import api as _core

Resources = dict[str, float]

#: The one tolerance of "it fits" (``free + EPS >= demand``).
EPS = _core.EPS
#: The kinds every node reports, in the order the placement rows use first.
STANDARD_KINDS: tuple[str, ...] = _core.STANDARD_KINDS
#: True when every kind of ``demand`` (> 0) is available in ``free``, within ``EPS``.
fits = _core.fits
#: All kinds present, standard ones first, then custom ones sorted (a stable dims order).
kinds = _core.kinds
DEFAULT_COST: Mapping[str, float] = {"cpu": 1.0}
_KIND = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
# Quantities larger than this are certainly a unit mistake (and would overflow float sums).
MAX_QUANTITY = 1e15


class ResourceError(ValueError):
    """A resource map is malformed; the message says which entry and why."""


def parse(value: Mapping[str, object] | None, *, what: str = "cost") -> Resources:
    """Validate and normalise a resource map; raise ResourceError saying which entry is wrong."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ResourceError(
            f"{what} must be a dict such as {{'cpu': 2, 'memory': 1000}}, got {type(value).__name__}"
        )
    out: Resources = {}
    for kind, qty in value.items():
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise ResourceError(
                f"{what}: resource kind {kind!r} is not a name (letters, digits, _ . -; e.g. 'cpu', 'gpu', 'fpga')"
            )
        if isinstance(qty, bool) or not isinstance(qty, (int, float)):
            raise ResourceError(
                f"{what}: {kind} = {qty!r} is not a number; give a plain number"
                + (" in MB" if kind == "memory" else "")
            )
        q = float(qty)
        if math.isnan(q) or math.isinf(q):
            raise ResourceError(f"{what}: {kind} = {qty!r} is not a finite number")
        if q < 0:
            raise ResourceError(f"{what}: {kind} = {qty!r} is negative; quantities are >= 0")
        if q > MAX_QUANTITY:
            raise ResourceError(f"{what}: {kind} = {qty!r} is implausibly large")
        if 0 < q <= EPS:
            # It would fit anywhere, even on a full node: within the tolerance of "it fits", it is 0.
            raise ResourceError(
                f"{what}: {kind} = {qty!r} is below the scheduler's resolution ({EPS:g}); "
                "give 0 or a larger quantity"
            )
        if q > 0:
            out[kind] = q
    return out


_parsed: dict[tuple[tuple[object, object], ...], Resources] = {}


def parse_cached(value: Mapping[str, object] | None, *, what: str = "cost") -> Resources:
    """``parse`` for the many identical small maps of one submission (``{'cpu': 1}`` 10,000 times):
    a valid map is parsed once per process (the result is a fresh dict every call); invalid ones
    raise exactly as ``parse`` does."""
    if type(value) is not dict:
        return parse(value, what=what)
    key = tuple(value.items())
    for item in key:
        if type(item[1]) is bool:  # True == 1 as a key: never cached (parse refuses it)
            return parse(value, what=what)
    try:
        hit = _parsed.get(key)
    except TypeError:  # an unhashable quantity: parse reports it
        return parse(value, what=what)
    if hit is None:
        hit = parse(value, what=what)
        if len(_parsed) >= 1024:
            _parsed.clear()
        _parsed[key] = hit
    return dict(hit)


def parse_flag(text: str) -> tuple[str, float]:
    """Parse a ``--resource NAME=QTY`` flag value."""
    name, sep, qty = text.partition("=")
    if not sep:
        raise ResourceError(f"--resource {text!r}: expected NAME=QTY, e.g. --resource fpga=2")
    try:
        number = float(qty)
    except ValueError:
        raise ResourceError(f"--resource {text!r}: {qty!r} is not a number") from None
    parsed = parse({name.strip(): number}, what="--resource")
    return name.strip(), parsed.get(name.strip(), 0.0)


def add(a: Mapping[str, float], b: Mapping[str, float]) -> Resources:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + v
    return out


def subtract(a: Mapping[str, float], b: Mapping[str, float]) -> Resources:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) - v
    return out


def probe_local() -> Resources:
    """What this process may use: cpus, memory in MB, GPUs (``handoffd.probe`` says how)."""
    from handoffd import probe

    found = probe.probe()
    return {"cpu": found.cpu.value, "memory": found.memory.value, "gpu": found.gpu.value}

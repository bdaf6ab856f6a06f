"""The decorator API: ``@handoffd.function`` and ``with handoffd.DAG() as dag:`` returning ``Ref``s.

Design note: a decorated function called inside a ``with DAG()`` block adds one ``Function`` to that
DAG and returns a ``Ref`` to it; outside a block it is the plain function. A call compiles to the
same ``Function`` a user would write by hand whenever the model can say it: leading Ref arguments
become ``args`` (variadic), one list or tuple of Refs passed alone becomes ``args`` with
``argument_inclusion="as_list"``, everything else is ``extra_args``/``kwargs`` literals. Any other
shape (a literal before a Ref, a Ref in a keyword, a dict of Refs, Refs nested in containers) goes
through ``Rebuild``: the dependencies are still ``args`` in the order they appear, and the call's
arguments travel as a template in ``extra_args`` whose ``RefSlot`` markers the worker replaces with
the dependency values before calling the user's function. ``Rebuild`` is a module-level class, so
workers import it by reference and the user's function is pickled once per DAG as before.

Each call records the user's call site (file and line), kept by the DAG per function id: an error
the rules find later (a cycle through ``collocate_with``, a pin conflict, an unpicklable literal)
names the line that added the function.
"""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from handoffd import validation
from handoffd.arguments import Argument
from handoffd.dag import DAG, Function, active_dag
from handoffd.errors import ValidationError

#: the options a decorator or ``.options()`` may set, as Function fields (``inline`` is
#: ``type="inline"``)
OPTIONS = (
    "id",
    "cost",
    "node",
    "collocate_with",
    "max_retries",
    "timeout",
    "priority",
    "inline",
    "name",
)


@dataclass(frozen=True)
class Ref:
    """A function added to a DAG by a decorated call: pass it to other calls (a dependency), look
    its value up as ``results[ref.id]`` or ``client.get(ref)``."""

    id: str
    dag: DAG

    def __repr__(self) -> str:
        return f"Ref({self.id!r})"

    def __hash__(self) -> int:
        return hash((self.id, id(self.dag)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and other.id == self.id and other.dag is self.dag

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> Any:
        # A Ref is not its value: ``a, b = load()`` inside a block would otherwise iterate it.
        raise TypeError(
            f"{self!r} is a reference to a result, not the result: it cannot be iterated or "
            "unpacked inside the DAG block; pass it to another function, or read the value with "
            "results[ref.id] / client.get(ref) after the run"
        )


@dataclass(frozen=True)
class RefSlot:
    """Where the ``index``-th dependency value goes in a ``Rebuild`` template."""

    index: int


class Rebuild:
    """A call whose arguments mix Refs and literals: ``Rebuild(fn)(*deps, template)`` calls ``fn``
    with the template's ``RefSlot``s replaced by the dependency values."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, *given: Any) -> Any:
        *deps, (args, kwargs) = given
        return self.fn(*_fill(args, deps), **_fill(kwargs, deps))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Rebuild, (self.fn,))


def _fill(template: Any, deps: list[Any]) -> Any:
    kind = type(template)
    if kind is RefSlot:
        return deps[template.index]
    if kind is list or kind is tuple:
        return kind(_fill(item, deps) for item in template)
    if kind is dict:
        return {key: _fill(value, deps) for key, value in template.items()}
    return template


class RemoteFunction:
    """What ``@handoffd.function`` returns: a plain call outside a ``with DAG()`` block, a new
    ``Function`` of that DAG (and its ``Ref``) inside one."""

    def __init__(self, fn: Callable[..., Any], options: Mapping[str, Any]) -> None:
        if not callable(fn):
            raise TypeError(f"@handoffd.function decorates a callable, got {type(fn).__name__}")
        _check_options(options, "@handoffd.function(...)")
        if "id" in options:
            raise TypeError(
                "@handoffd.function(id=...) would give every call the same id; pass id= to the "
                "call (or .options(id=...)) instead"
            )
        self.fn = fn
        self.default_options = dict(options)
        self.name = str(options.get("name") or getattr(fn, "__name__", "function"))
        self._rebuild = Rebuild(fn)
        functools.update_wrapper(self, fn)
        # ``id`` is taken by the call as the new function's id unless the function has a
        # parameter of that name (then it goes to the function; use .options(id=...)).
        self._takes_id = _has_parameter(fn, "id")

    def options(self, **options: Any) -> _Bound:
        """This function with call options (``id``, ``node``, ``priority``, ``cost``, ...) for
        the calls made through the result: ``train.options(node="gpu-1")(data)``."""
        _check_options(options, f"{self.name}.options(...)")
        return _Bound(self, {**self.default_options, **options})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        dag = active_dag()
        if dag is None:
            _refuse_refs(self.name, args, kwargs)
            return self.fn(*args, **kwargs)
        options = self.default_options
        if "id" in kwargs and not self._takes_id:
            options = {**options, "id": kwargs.pop("id")}
        return self._add(dag, options, args, kwargs, sys._getframe(1))

    def _add(
        self,
        dag: DAG,
        options: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        frame: Any,
    ) -> Ref:
        site = f"{frame.f_code.co_filename}:{frame.f_lineno}"
        fid = options.get("id")
        if fid is None:
            fid = _generated_id(dag, self.name)
        deps: list[str] = []
        compiled = _compile(self, dag, args, kwargs, deps, site)
        collocate = options.get("collocate_with")
        if isinstance(collocate, Ref):
            _check_same_dag(collocate, dag, self.name, site)
            collocate = collocate.id
        function = Function(
            id=fid,
            code=compiled.code,
            args=deps,
            extra_args=compiled.extra_args,
            kwargs=compiled.kwargs,
            cost=dict(options.get("cost", {"cpu": 1})),
            argument_inclusion=compiled.inclusion,
            node=options.get("node"),
            collocate_with=collocate,
            type="inline" if options.get("inline") else "regular",
            max_retries=options.get("max_retries"),
            timeout=options.get("timeout"),
            priority=options.get("priority", 0),
        )
        try:
            validation.check_id(fid)
            if fid in dag:
                raise validation.duplicate_id(fid)
            validation.check_fields(
                fid,
                function.argument_inclusion,
                function.type,
                function.cost,
                function.node,
                function.collocate_with,
                function.max_retries,
                function.timeout,
                function.priority,
            )
        except ValidationError as exc:
            raise at_site(exc, site) from None
        dag.add_function(function)
        dag.call_sites[fid] = site
        return Ref(fid, dag)

    def __repr__(self) -> str:
        return f"<handoffd.function {self.name}>"


class _Bound:
    """A RemoteFunction with call options (``.options()``)."""

    def __init__(self, remote: RemoteFunction, options: dict[str, Any]) -> None:
        self.remote = remote
        self.options = options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        dag = active_dag()
        if dag is None:
            _refuse_refs(self.remote.name, args, kwargs)
            return self.remote.fn(*args, **kwargs)
        return self.remote._add(dag, self.options, args, kwargs, sys._getframe(1))


@dataclass
class _Compiled:
    code: Callable[..., Any]
    extra_args: list[Any]
    kwargs: dict[str, Any]
    inclusion: str


def _compile(
    remote: RemoteFunction,
    dag: DAG,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    deps: list[Any],
    site: str,
) -> _Compiled:
    """The Function fields of one call; fills ``deps`` with the dependencies in order."""
    leading = 0
    while leading < len(args) and _is_dep(args[leading]):
        leading += 1
    rest = args[leading:]
    if not _has_ref(rest) and not _has_ref(kwargs):
        for ref in args[:leading]:
            deps.append(_dep(ref, dag, remote.name, site))
        return _Compiled(remote.fn, list(rest), dict(kwargs), "variadic")
    if (
        len(args) == 1
        and type(args[0]) in (list, tuple)
        and args[0]
        and all(_is_dep(item) for item in args[0])
        and not _has_ref(kwargs)
    ):
        for ref in args[0]:
            deps.append(_dep(ref, dag, remote.name, site))
        if type(args[0]) is list:  # as_list passes a list: a tuple needs the template
            return _Compiled(remote.fn, [], dict(kwargs), "as_list")
    deps.clear()
    positional = _template(list(args), deps, dag, remote.name, site)
    keywords = _template(kwargs, deps, dag, remote.name, site)
    return _Compiled(remote._rebuild, [(positional, keywords)], {}, "variadic")


def _is_dep(value: Any) -> bool:
    """A Ref, or an Argument naming a Ref: a dependency of the call."""
    return isinstance(value, Ref) or (isinstance(value, Argument) and isinstance(value.id, Ref))


def _dep(value: Ref | Argument, dag: DAG, name: str, site: str) -> Any:
    """The dependency of the Function for a Ref (its id) or an Argument (with the Ref's id)."""
    ref = value if isinstance(value, Ref) else value.id
    _check_same_dag(ref, dag, name, site)
    if isinstance(value, Argument):
        return replace(value, id=ref.id)
    return ref.id


def _template(value: Any, deps: list[Any], dag: DAG, name: str, site: str) -> Any:
    if _is_dep(value):
        deps.append(_dep(value, dag, name, site))
        return RefSlot(len(deps) - 1)
    kind = type(value)
    if kind is list or kind is tuple:
        return kind(_template(item, deps, dag, name, site) for item in value)
    if kind is dict:
        return {key: _template(item, deps, dag, name, site) for key, item in value.items()}
    return value


def _has_ref(value: Any, depth: int = 0) -> bool:
    if _is_dep(value):
        return True
    if depth > 16:
        return False
    kind = type(value)
    if kind is list or kind is tuple:
        return any(_has_ref(item, depth + 1) for item in value)
    if kind is dict:
        return any(_has_ref(item, depth + 1) for item in value.values())
    return False


def _check_same_dag(ref: Ref, dag: DAG, name: str, site: str) -> None:
    if ref.dag is not dag or ref.id not in dag:
        raise at_site(
            ValidationError(
                "missing_dependency",
                None,
                f"{name}() was passed {ref!r}, which belongs to another DAG; pass Refs only to "
                f"calls inside the `with DAG()` block that made them",
            ),
            site,
        )


def _refuse_refs(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if _has_ref(args) or _has_ref(kwargs):
        raise TypeError(
            f"{name}() was called outside a `with handoffd.DAG()` block with a Ref argument; "
            "a Ref is a result still to be computed: call it inside the block, or pass the value "
            "(results[ref.id] or client.get(ref)) instead"
        )


def _generated_id(dag: DAG, name: str) -> str:
    counter = dag.id_counters.setdefault(name, itertools.count(1))
    while True:
        fid = f"{name}-{next(counter)}"
        if fid not in dag:
            return fid


def _check_options(options: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(
            f"{where} got unknown option(s) {', '.join(unknown)}; the options are "
            f"{', '.join(OPTIONS)}"
        )


def _has_parameter(fn: Callable[..., Any], name: str) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params and params[name].kind not in (
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
    )


def at_site(error: ValidationError, site: str) -> ValidationError:
    """``error`` with the call site that added its function appended to the message."""
    return ValidationError(error.kind, error.function_id, f"{error.message} (call at {site})")


def function(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Decorate a function for DAGs: ``@handoffd.function`` or ``@handoffd.function(cost=...,
    max_retries=..., timeout=..., priority=..., node=..., collocate_with=..., inline=...,
    name=...)``. Inside ``with handoffd.DAG():`` a call adds a function and returns a ``Ref``."""
    if fn is not None:
        return RemoteFunction(fn, options)
    return lambda f: RemoteFunction(f, options)


__all__ = ["function", "Ref", "RemoteFunction", "Rebuild", "RefSlot", "OPTIONS", "at_site"]

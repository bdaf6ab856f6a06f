"""A plain DAG's submission built as columns in one pass (``handoffd.dag_columns``) against the
records' path it replaces (``DAG.wire_tasks`` rows, then ``messages_submit.submit_columns``): the
same message field by field, the same bytes, the same submission decoded by a daemon, the same
records for an older daemon, and the same refusal of bad input, on random DAGs. Both builds:
``dag_columns`` compiled from its .py with the .pxd beside it, and the .py run as plain Python."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import pytest
from pure_build import check_builds, pure

import handoffd
from handoffd import dag_columns, values
from handoffd.errors import ValidationError
from handoffd.protocol import messages as m
from handoffd.protocol.codec import Codec, Rows
from handoffd.protocol.messages_submit import (
    COLUMNS_SINCE,
    HEADS_SINCE,
    SentColumns,
    SubmitColumns,
    as_sent,
    as_submission,
    sent_payloads,
)

pytestmark = pytest.mark.timeout(120)

CODEC = Codec()


PURE = pure(dag_columns, "handoffd_dag_columns_pure")
BUILDS = pytest.mark.parametrize("build", [dag_columns, PURE], ids=["compiled", "pure"])


def test_the_compiled_build_is_the_one_imported_when_the_core_was_built() -> None:
    check_builds(dag_columns, PURE)


def _double(*xs: Any) -> Any:
    return xs


def _triple(*xs: Any) -> Any:
    return (xs, 3)


def _random_dag(rng: random.Random, n: int) -> handoffd.DAG:
    """Plain functions only: random dependencies (on earlier or later ones, some repeated),
    inclusions, priorities, literals and callables, added in a shuffled order."""
    names = [f"f{i}" for i in range(n)]
    rank = list(range(n))
    rng.shuffle(rank)  # the dependency order, unlike the insertion order
    dag = handoffd.DAG()
    for i in range(n):
        earlier = [j for j in range(n) if rank[j] < rank[i]]
        deps = [names[j] for j in rng.sample(earlier, min(len(earlier), rng.randint(0, 3)))]
        if deps and rng.random() < 0.1:
            deps.append(deps[0])  # a repeated dependency
        extra: list[Any] = rng.choice(
            [[], [i], [i, "x"], [2**40 + i], [[1, 2], {"k": i}], [None, 1.5]]
            + [[2**31 - 1], [-(2**31)], [2**31], [-(2**31) - 1], [-i], [True], [1.0]]
        )
        dag.add_function(
            handoffd.Function(
                id=names[i],
                code=rng.choice((_double, _triple, len)),
                args=deps,
                extra_args=extra,
                argument_inclusion=rng.choice(("variadic", "as_list")),
                priority=rng.randint(-3, 3),
                cost=rng.choice(({"cpu": 1}, {"cpu": 1.0})),
            )
        )
    return dag


def _rows_path(dag: handoffd.DAG, priority: int = 0, **options: Any) -> tuple[Any, list[bytes]]:
    """What the client built before: ``wire_tasks``' rows (the run's priority added), payloads."""
    rows, payloads = dag.wire_tasks(allow_empty=False, **options)
    if priority:
        rows = [(*row[:9], row[9] + priority) for row in rows]
    return Rows(rows), payloads


def _options() -> dict[str, Any]:
    return {"policy": "binpack", "max_retries": 3, "outputs": None, "packages": ()}


def _uniform_dag(rng: random.Random, n: int) -> handoffd.DAG:
    """W1's shape (one callable, one int literal each, no priority, one inclusion, no
    dependencies), with at most one function that differs in one way: the columns the build
    makes whole rather than packs (priorities, inclusions, code heads, counts) and the ones it
    must pack again."""
    dag = handoffd.DAG()
    odd = rng.randrange(n)
    how = rng.choice(("none", "priority", "as_list", "code", "big", "dep", "literal"))
    for i in range(n):
        fn = handoffd.Function(id=f"n{i}", code=_double, extra_args=[rng.randint(-9, 2**33)])
        if i == odd:
            if how == "priority":
                fn.priority = rng.choice((-1, 1, 2**62))
            elif how == "as_list":
                fn.argument_inclusion = "as_list"
            elif how == "code":
                fn.code = _triple
            elif how == "big":
                fn.code = _big_head(rng.randrange(1 << 30))
            elif how == "dep" and i:
                fn.args = [f"n{rng.randrange(i)}"]
            elif how == "literal":
                fn.extra_args = []
        dag.add_function(fn)
    return dag


def _big_head(salt: int) -> Any:
    """A callable whose pickle is past ``HEAD_BYTES`` (sent whole in its frames)."""
    blob = random.Random(salt).randbytes(dag_columns.HEAD_BYTES + 10)

    def big(*xs: Any) -> Any:
        return (xs, len(blob))

    return big


@BUILDS
@pytest.mark.parametrize("seed", range(40))
def test_direct_columns_are_the_records_columns(build: ModuleType, seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(2, 60)
    dag = _random_dag(rng, n) if seed % 2 else _uniform_dag(rng, n)
    priority = rng.choice((0, 0, 5, -2))
    _rows_path(dag, **_options())  # (each callable's call head cached, as the next call finds it)
    built = build.plain_columns(dag, priority=priority, **_options())
    assert built is not None
    sent, payloads = built
    rows, old_payloads = _rows_path(dag, priority, **_options())
    # built as tails and heads (protocol 6); whole for a daemon below 6, as the rows' path's
    whole = sent_payloads(sent, payloads, HEADS_SINCE - 1)
    assert whole == old_payloads
    assert sent_payloads(sent, payloads, HEADS_SINCE) is payloads
    with_heads = as_sent(m.SubmitRun(1, "r1", sent, 3, "binpack", None), HEADS_SINCE)  # type: ignore[arg-type]
    assert type(with_heads) is SubmitColumns and with_heads.heads == sent.heads
    decoded6 = CODEC.decode(
        [bytes(f) for f in CODEC.encode(with_heads, sender="c", frames=payloads)]
    )
    assert decoded6 is not None
    assert list(as_submission(decoded6.msg).tasks.whole(decoded6.frames)) == old_payloads  # type: ignore[union-attr]
    for answer in (False, True):
        args = (1, "r1", 3, "binpack", ("f0",))
        if answer:
            new = m.SubmitAndWait(*args[:2], sent, *args[2:], 1.5, 1 << 20, True, ())  # type: ignore[arg-type]
            old = m.SubmitAndWait(*args[:2], rows, *args[2:], 1.5, 1 << 20, True, ())  # type: ignore[arg-type]
        else:
            new = m.SubmitRun(*args[:2], sent, *args[2:])  # type: ignore[arg-type]
            old = m.SubmitRun(*args[:2], rows, *args[2:])  # type: ignore[arg-type]
        columns_new, columns_old = as_sent(new, COLUMNS_SINCE), as_sent(old, COLUMNS_SINCE)
        assert type(columns_new) is SubmitColumns and columns_new == columns_old
        frames = CODEC.encode(columns_new, sender="c", frames=whole)
        assert frames == CODEC.encode(columns_old, sender="c", frames=old_payloads)
        decoded = CODEC.decode([bytes(f) for f in frames])
        assert decoded is not None
        got = as_submission(decoded.msg)
        assert list(got.tasks) == [m.TaskMeta(*row) for row in rows]
        # a daemon that reads no columns gets the records, byte for byte
        for daemon_max in (0, COLUMNS_SINCE - 1):
            records = as_sent(new, daemon_max)
            assert type(records) is type(old)
            assert CODEC.encode(records, sender="c") == CODEC.encode(old, sender="c")
    # what the daemon's workers run: the same calls
    for payload in whole[:5]:
        assert payload == old_payloads[whole.index(payload)]
        assert values.loads_call(payload) is not None


@BUILDS
def test_the_client_sends_plain_dags_as_built_columns_and_others_as_rows(
    build: ModuleType,
) -> None:
    plain = _random_dag(random.Random(1), 10)
    tasks, _, ids = build.submission(plain, "binpack", 3, None, (), 0)
    assert (
        type(tasks) is SentColumns
        and ids == list(tasks.ids)
        and sorted(ids) == sorted(plain.functions)
    )
    for change in (
        {"node": "n1"},
        {"cost": {"cpu": 2}},
        {"cost": {"cpu": 1, "memory": 1.0}},
        {"kwargs": {"a": 1}},
        {"max_retries": 1},
        {"timeout": 2.0},
        {"collocate_with": "f0"},
    ):
        dag = _random_dag(random.Random(1), 10)
        fn = dag["f3"]
        for name, value in change.items():
            setattr(fn, name, value)
        assert build.plain_columns(dag, priority=0, **_options()) is None, change
        tasks, payloads, ids = build.submission(dag, "binpack", 3, None, (), 0)
        assert type(tasks) is Rows and len(payloads) == 10 and len(ids) == 10
    hooked = handoffd.DAG()
    hooked.add_function(handoffd.Function(id="a", code=len, extra_args=[[1]]))
    hooked.add_function(
        handoffd.Function(
            id="b", code=len, args=[handoffd.Argument("a", serialize=repr, deserialize=eval)]
        )  # type: ignore[arg-type]
    )
    assert build.plain_columns(hooked, priority=0, **_options()) is None
    one = handoffd.DAG().add_function(handoffd.Function(id="one", code=len, extra_args=[[1]]))
    assert build.plain_columns(one, priority=0, **_options()) is None  # the one-task path


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("not today")


def _spoil(dag: handoffd.DAG, how: str) -> dict[str, Any]:
    """Make a plain ``dag`` wrong in one way a user can; the run options to submit it with."""
    options = _options()
    fn = dag["f3"]
    if how == "missing":
        fn.args = [*fn.args, "nowhere"]
    elif how == "cycle":
        dag["f0"].args = ["f1"]
        dag["f1"].args = ["f0"]
    elif how == "self":
        fn.args = ["f3"]
    elif how == "id":
        fn.id = "renamed"
    elif how == "pickle":
        fn.extra_args = [_Unpicklable()]
    elif how == "code":
        fn.code = 42  # type: ignore[assignment]
    elif how == "policy":
        options["policy"] = "sideways"
    elif how == "retries":
        options["max_retries"] = -1
    elif how == "outputs":
        options["outputs"] = ["nowhere"]
    elif how == "dep":
        fn.args = [*fn.args, 7]
    elif how == "cost":
        fn.cost = {"cpu": True}
    return options


@pytest.mark.parametrize(
    "how",
    [
        "missing",
        "cycle",
        "self",
        "id",
        "pickle",
        "code",
        "policy",
        "retries",
        "outputs",
        "dep",
        "cost",
        "prio",
    ],
)
@BUILDS
def test_bad_input_gets_the_records_paths_error(build: ModuleType, how: str) -> None:
    errors = []
    for direct in (True, False):
        dag = _random_dag(random.Random(3), 12)
        options = _spoil(dag, how)
        priority: Any = True if how == "prio" else 0
        try:
            if direct:
                build.submission(
                    dag, options["policy"], options["max_retries"], options["outputs"], (), priority
                )
            else:
                build.rows_submission(  # the records' path, as the client took it
                    dag, options["policy"], options["max_retries"], options["outputs"], (), priority
                )
        except ValidationError as exc:
            errors.append((exc.kind, exc.function_id, exc.message))
        else:
            errors.append(None)
    assert errors[0] is not None and errors[0] == errors[1]

"""One set of submission rules (handoffd.validation) on every path: each invalid submission below is
fed to run_local, to the client (which refuses it before sending anything) and to a real owner
(the same submission sent as the wire rows a client that skipped its checks would send), and all
three raise the same ValidationError: same kind, same function, same message."""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import pytest

import handoffd
from handoffd import values
from handoffd.daemon.owner_submit import OFF_LOOP_TASKS
from handoffd.dag import Function
from handoffd.protocol import codec
from handoffd.protocol import messages as m
from handoffd.protocol.snapshot import error_from_info
from handoffd.testing import ThreadedCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)

NAN = float("nan")


def noop(*args: Any) -> None:
    return None


def fn(fid: str, **kw: Any) -> Function:
    kw.setdefault("code", noop)
    kw.setdefault("cost", {"cpu": 1.0})
    return Function(id=fid, **kw)


@dataclass
class Case:
    name: str
    functions: list[Function]
    kind: str
    function_id: str | None
    options: dict[str, Any] = field(default_factory=dict)  # policy, max_retries, outputs
    paths: tuple[str, ...] = ("run_local", "client", "owner")


CASES = [
    Case("missing dependency", [fn("a"), fn("b", args=["a", "ghost"])], "missing_dependency", "b"),
    Case("missing collocation", [fn("a", collocate_with="ghost")], "missing_dependency", "a"),
    Case("cycle", [fn("a", args=["c"]), fn("b", args=["a"]), fn("c", args=["b"])], "cycle", "a"),
    Case("self cycle", [fn("z"), fn("a", args=["a"])], "cycle", "a"),
    Case("negative cost", [fn("a", cost={"cpu": -1.0})], "invalid_cost", "a"),
    Case("nan cost", [fn("a", cost={"cpu": NAN})], "invalid_cost", "a"),
    Case("cost below resolution", [fn("a", cost={"cpu": 1e-9})], "invalid_cost", "a"),
    Case("cost kind", [fn("a", cost={"two words": 1.0})], "invalid_cost", "a"),
    Case("inclusion", [fn("a", argument_inclusion="splat")], "invalid_argument_inclusion", "a"),
    Case("pinned inline", [fn("a"), fn("i", type="inline", node="n1")], "invalid_inline", "i"),
    Case("inline cost", [fn("i", type="inline", cost={"cpu": 2.0})], "invalid_inline", "i"),
    Case(
        "inline collocated",
        [fn("i", type="inline"), fn("b", collocate_with="i")],
        "invalid_inline",
        "b",
    ),
    Case("collocated with itself", [fn("s", collocate_with="s")], "invalid_collocation", "s"),
    Case(
        "collocated pins",
        [fn("a", node="n1"), fn("b", collocate_with="a"), fn("c", collocate_with="b", node="n2")],
        "invalid_collocation",
        "c",
    ),
    Case("empty node name", [fn("a", node="")], "invalid_option", "a"),
    Case("negative retries", [fn("a", max_retries=-1)], "invalid_option", "a"),
    Case("zero timeout", [fn("a", timeout=0.0)], "invalid_option", "a"),
    Case("nan timeout", [fn("a", timeout=NAN)], "invalid_option", "a"),
    Case(
        "a function's own problem before an earlier missing dependency",
        [fn("a", args=["nowhere"]), fn("b", timeout=-1.0)],
        "invalid_option",
        "b",
    ),
    Case("run retries", [fn("a")], "invalid_option", None, {"max_retries": -1}),
    Case(
        "policy",
        [fn("a")],
        "invalid_policy",
        None,
        {"policy": "nearest"},
        ("client", "owner"),  # run_local places nothing
    ),
    Case(
        "outputs",
        [fn("a")],
        "missing_dependency",
        "ghost",
        {"outputs": ["ghost"]},
        ("client", "owner"),
    ),
    Case("empty", [], "empty_dag", None, {}, ("client", "owner")),  # run_local: {} (nothing to run)
]


def padded(functions: list[Function]) -> list[Function]:
    """``functions`` after enough independent ones that the owner checks the submission (one
    message) in its upload thread, not on its loop (``owner_submit.OFF_LOOP_TASKS``)."""
    return [fn(f"pad{i}") for i in range(OFF_LOOP_TASKS)] + functions


CASES += [
    Case(f"{case.name}, big run", padded(case.functions), case.kind, case.function_id)
    for case in CASES
    if case.name in ("cycle", "missing dependency", "negative cost", "pinned inline")
]


def dag_of(functions: list[Function]) -> handoffd.DAG:
    dag = handoffd.DAG()
    for function in functions:
        dag.add_function(function)
    return dag


def wire_form(functions: list[Function]) -> tuple[list[tuple[Any, ...]], list[bytes]]:
    """The rows and code frames a client that skipped its own checks would send."""
    rows = []
    payloads = []
    for f in functions:
        timeout = None if f.timeout is None else float(f.timeout)
        rows.append(
            (
                f.id, tuple(f.args), dict(f.cost), f.argument_inclusion, f.node, f.collocate_with,
                f.type == "inline", f.max_retries, timeout, f.priority,
            )
        )  # fmt: skip
        payloads.append(values.dumps_call(values.dumps_code(f.code), [], {}))
    return rows, payloads


@pytest.fixture(scope="module")
def client():
    with ThreadedCluster([{"cpu": 2}]) as cluster:
        with handoffd.connect(cluster.address, timeout=10) as c:
            yield c


def via_run_local(case: Case, client: Any) -> BaseException:
    with pytest.raises(handoffd.ValidationError) as info:
        handoffd.run_local(dag_of(case.functions), max_workers=1, **case.options)
    return info.value


def via_client(case: Case, client: Any) -> BaseException:
    with pytest.raises(handoffd.ValidationError) as info:
        client.submit(dag_of(case.functions), **case.options)
    return info.value


def via_owner(case: Case, client: Any) -> BaseException:
    rows, payloads = wire_form(case.functions)
    outputs = case.options.get("outputs")
    msg = m.SubmitRun(
        next(client._ids),
        uuid.uuid4().hex[:16],
        codec.Rows(rows),  # type: ignore[arg-type]
        case.options.get("max_retries", 3),
        case.options.get("policy", "binpack"),
        None if outputs is None else tuple(outputs),
    )
    reply, _ = client._request(msg, payloads, timeout=30)
    assert isinstance(reply, m.RunRejected), f"the owner accepted it: {reply}"
    return error_from_info(reply.error)


PATHS = {"run_local": via_run_local, "client": via_client, "owner": via_owner}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_path_refuses_with_the_same_error(case: Case, client: Any) -> None:
    errors = {path: PATHS[path](case, client) for path in case.paths}
    seen = {
        path: (type(e).__name__, e.kind, e.function_id, e.message)  # type: ignore[attr-defined]
        for path, e in errors.items()
    }
    first = next(iter(seen.values()))
    assert first[:3] == ("ValidationError", case.kind, case.function_id), seen
    assert all(s == first for s in seen.values()), seen


def test_the_owner_refuses_what_no_dag_object_can_hold(client: Any) -> None:
    """Duplicate and empty ids, and code frames that do not match the functions: only a wire
    form can carry them; the owner names the rule as add_function would."""

    def refused(rows: list[tuple[Any, ...]], payloads: list[bytes]) -> handoffd.ValidationError:
        msg = m.SubmitRun(
            next(client._ids), uuid.uuid4().hex[:16], codec.Rows(rows), 3, "binpack", None
        )  # type: ignore[arg-type]
        reply, _ = client._request(msg, payloads, timeout=30)
        assert isinstance(reply, m.RunRejected), reply
        error = error_from_info(reply.error)
        assert isinstance(error, handoffd.ValidationError)
        return error

    rows, payloads = wire_form([fn("a"), fn("b")])
    twice = refused([rows[0], rows[0]], payloads)
    with pytest.raises(handoffd.ValidationError) as info:
        dag_of([fn("a"), fn("a")])
    assert (twice.kind, twice.function_id, twice.message) == (
        info.value.kind,
        info.value.function_id,
        info.value.message,
    )
    empty = refused([("",) + rows[0][1:]], payloads[:1])
    with pytest.raises(handoffd.ValidationError) as info:
        dag_of([fn("")])
    assert (empty.kind, empty.message) == (info.value.kind, info.value.message)
    short = refused(rows, payloads[:1])
    assert short.kind == "malformed" and "2 functions but 1 code frames" in short.message


def test_run_local_runs_an_empty_dag_the_cluster_refuses() -> None:
    assert handoffd.run_local(handoffd.DAG()) == {}

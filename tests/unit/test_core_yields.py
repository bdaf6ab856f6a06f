"""The compiled ordering kernel lets a waiting thread have the GIL through CPython's own switch
(``_consts.let_others_run``: bytecode, so its first instruction honours a pending drop request).
The daemon orders a 1,000,000-task run in its upload thread while the event loop waits for the
GIL; a ``with nogil: pass`` yield only woke the loop without letting it in (holds of 70-150 ms,
quiet machine, ``bench/bench_loop_stall.py --cases chain``)."""

from __future__ import annotations

import types

import pytest

from handoffd._core import _consts, ranking
from handoffd._core import sched as compiled
from handoffd._core import sched_py as twin


def _chain(n: int) -> tuple[list[int], list[list[int]], list[float], list[float]]:
    consumers = [[i + 1] for i in range(n - 1)] + [[]]
    return [0] * n, consumers, [1.0] * n, [1.0] * n


def test_the_yield_is_bytecode() -> None:
    # A compiled function would never reach the eval loop's check for a drop request.
    assert isinstance(_consts.let_others_run, types.FunctionType)
    assert isinstance(_consts.let_others_run.__code__, types.CodeType)


def test_order_offers_the_gil_through_the_eval_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 100_000
    calls: list[int] = []
    # The module's global is looked up at each call: counting replaces it for this test (the
    # kernel is ``ranking``'s, which ``sched`` re-exports).
    assert compiled.order is ranking.order
    monkeypatch.setattr(ranking, "let_others_run", lambda: calls.append(1))
    order, rank = compiled.order(*_chain(n))
    assert order == list(range(n))
    # Four input loops and the output loop, each every 16,384 items.
    assert len(calls) >= 5 * (n // 16_384)


def test_order_is_unchanged_by_the_yields() -> None:
    args = _chain(50_000)
    assert compiled.order(*args) == twin.order(*args)


def test_an_error_raised_while_yielding_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    # (A KeyboardInterrupt handled at the eval loop's check surfaces the same way.)
    def interrupted() -> None:
        raise RuntimeError("stop")

    monkeypatch.setattr(ranking, "let_others_run", interrupted)
    with pytest.raises(RuntimeError, match="stop"):
        compiled.order(*_chain(40_000))

"""Our owner's frees to our own executor (``FreeRun``, ``FreeValues``) go to it straight from
``_deliver``, in their place among what the node sent itself, with no envelope or router pass;
the values they free are gone from our store all the same."""

from __future__ import annotations

from typing import Any

import pytest

import handoffd
from handoffd.protocol import messages as m
from handoffd.testing import ThreadedCluster, wait_for

pytestmark = pytest.mark.timeout(120)


def _noop(i: int) -> int:
    return i


def _add(a: int, b: int) -> int:
    return a + b


def test_frees_to_our_own_executor_skip_the_router_and_still_free():
    with ThreadedCluster([{"cpu": 1}]) as cluster:
        (node,) = cluster.nodes
        routed: list[type] = []
        freed: list[type] = []
        route = node._route
        on_free_run, on_free_values = node.executor.on_free_run, node.executor.on_free_values

        def counting_route(msg: Any, *rest: Any) -> None:
            routed.append(type(msg))
            route(msg, *rest)

        def counting_run(msg: m.FreeRun, term: int = 0) -> None:
            freed.append(type(msg))
            on_free_run(msg, term)

        def counting_values(msg: m.FreeValues, term: int = 0) -> None:
            freed.append(type(msg))
            on_free_values(msg, term)

        node._route = counting_route
        node.executor.on_free_run = counting_run
        node.executor.on_free_values = counting_values
        with handoffd.connect(cluster.address, timeout=10) as client:
            for i in range(3):
                dag = handoffd.DAG().add_function(
                    handoffd.Function(id="f", code=_noop, extra_args=[i])
                )
                assert client.execute(dag) == {"f": i}
            dag = handoffd.DAG()  # a value freed once its consumer is done (FreeValues)
            dag.add_function(handoffd.Function(id="a", code=_noop, extra_args=[2]))
            dag.add_function(handoffd.Function(id="b", code=_add, args=["a"], extra_args=[3]))
            run = client.submit(dag, outputs=["b"])
            run.wait(timeout=30)
            assert run.result("b") == 5
            run.release()
        wait_for(lambda: not node.executor.store.runs(), 30, what="every run's values freed")
        assert m.FreeRun in freed and m.FreeValues in freed, freed
        assert m.FreeRun not in routed and m.FreeValues not in routed, routed

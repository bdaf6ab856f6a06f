"""The client's cache of pickled functions (``handoffd.code_cache``) on a real daemon: one
``execute`` after another with the same function reuses its pickle, and every change to what the
function carries to the worker (redefined, new closure values, a global captured by value rebound
or changed in place, new defaults) is what the worker runs next."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

import handoffd
from handoffd import code_cache

pytestmark = pytest.mark.timeout(180)

# The daemon's workers have no copy of this file: its functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SCALE = 1
OFFSETS = [0]


def scaled(x, bonus=0):
    return x * SCALE + sum(OFFSETS) + bonus


def make_adder(k):
    def add(x):
        return x + k

    def bump():
        nonlocal k
        k += 100

    return add, bump


def run(client, fn, *args):
    dag = handoffd.DAG().add_function(handoffd.Function(id="f", code=fn, extra_args=list(args)))
    return client.execute(dag)["f"]


def test_each_change_to_a_cached_function_reaches_the_worker(daemons):
    global SCALE, scaled
    node = daemons.start(cpu=1, memory=1000)
    code_cache.clear()
    original = scaled
    try:
        with handoffd.connect(node.address) as client:
            assert run(client, scaled, 2) == 2
            hits = code_cache.hits
            assert run(client, scaled, 3) == 3
            assert code_cache.hits == hits + 1  # the same function: its pickle reused

            SCALE = 10  # a global captured by value, rebound
            assert run(client, scaled, 3) == 30
            OFFSETS.append(5)  # ... a global list changed in place
            assert run(client, scaled, 3) == 35
            scaled.__defaults__ = (1000,)  # new defaults
            assert run(client, scaled, 3) == 1035

            def scaled(x, bonus=0):  # redefined under the same name
                return -x

            assert run(client, scaled, 3) == -3

            add, bump = make_adder(1)
            other, _ = make_adder(2)  # the same code, another closure value
            assert run(client, add, 1) == 2
            assert run(client, other, 1) == 3
            bump()  # the closure's cell changed
            assert run(client, add, 1) == 102
            hits = code_cache.hits
            assert run(client, add, 1) == 102
            assert code_cache.hits == hits + 1
    finally:
        SCALE = 1
        OFFSETS[:] = [0]
        scaled = original
        original.__defaults__ = (0,)

"""Protocol 6's code heads in whole nodes: a submission whose ``head_of`` is malformed (an index
out of range, the wrong length) or whose ``heads`` are of the wrong type is dropped, counted and
logged saying what is wrong, and the node keeps working: a DAG of several codes (closures over
different constants, many functions sharing one code) then runs with the right results."""

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Any

import cloudpickle
import msgpack
import pytest

import handoffd
from handoffd.protocol.columns import pack
from handoffd.protocol.messages_submit import SubmitColumns
from handoffd.testing import ThreadedCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(150)


def _scaled(k: int) -> Any:
    def scaled(*xs: int) -> int:
        return k * sum(xs)

    return scaled


def _submission(**change: Any) -> SubmitColumns:
    good = SubmitColumns(
        1, "bad-run", ("a", "b"), pack("i", [0, 0]), (), ({"cpu": 1.0},), pack("i", [0, 0]),
        ("variadic",), pack("B", [0, 0]), pack("q", [0, 0]), 0, "binpack", None, True, 1.0,
        1 << 20, True, (), (b"H",), pack("i", [0, -1]),
    )  # fmt: skip
    return dataclasses.replace(good, **change)


def test_malformed_heads_are_dropped_and_the_node_keeps_working(caplog: Any) -> None:
    with ThreadedCluster([{"cpu": 2, "memory": 2000}]) as cluster:
        node = cluster.nodes[0]

        def deliver(frames: list[Any]) -> int:
            def go() -> int:
                node._on_frames(b"client", frames, True)
                return int(node.dropped)

            return int(cluster.run(go))

        before = int(cluster.run(lambda: node.dropped))
        out_of_range = node.codec.encode(_submission(head_of=pack("i", [0, 3])), sender="c")
        short = node.codec.encode(_submission(head_of=pack("i", [0])), sender="c")
        frames = node.codec.encode(_submission(), sender="c")
        values = msgpack.unpackb(frames[0], use_list=True)
        values[-2] = ["a str, not bytes"]  # (heads: the message's next-to-last field)
        wrong_type = [msgpack.packb(values, use_bin_type=True), *frames[1:]]
        with caplog.at_level(logging.WARNING):
            assert deliver([*out_of_range, b"x", b"y"]) == before + 1
            assert deliver([*short, b"x", b"y"]) == before + 2
            assert deliver([*wrong_type, b"x", b"y"]) == before + 3
        said = caplog.text
        assert "SubmitColumns.head_of: index 3 out of range [-1, 1)" in said
        assert "SubmitColumns.head_of: 4 bytes, expected 2 x 4" in said
        assert not cluster.run(lambda: node.scheduler.run_state("bad-run"))

        dag, want = handoffd.DAG(), {}
        codes = [_scaled(2), _scaled(5), lambda *xs: -sum(xs)]
        for i in range(60):
            deps = [f"f{i - 1}"] if i % 4 == 3 else []
            code = codes[i % 3]
            dag.add_function(handoffd.Function(id=f"f{i}", code=code, args=deps, extra_args=[i]))
            want[f"f{i}"] = code(*[want[d] for d in deps], i)
        with handoffd.connect(cluster.address, timeout=10) as client:
            assert client.execute(dag) == want

"""A node whose event loop is blocked is not suspected: its probe responder thread answers Pings
(handoffd/transport/responder.py). Two nodes, each on its own loop thread, with the daemon's lan()
membership timings (detection ~1 s); node A's loop is blocked for 3 s while B watches.

With the responder, B never sees A SUSPECT or DEAD. The control, with the responder off
(``HANDOFFD_PROBE_THREAD=0``, probes answered on the loop), shows the same block does make B
suspect A: so the block is long enough to matter and the first case can fail.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from handoffd.config import MembershipConfig, NodeConfig
from handoffd.daemon.node import Node
from handoffd.protocol import messages as m
from handoffd.testing import unique_cluster, wait_for

pytestmark = pytest.mark.timeout(120)

BLOCK_S = 3.0


class LoopNode:
    """One Node on an event loop of its own, in a thread."""

    def __init__(self, cfg: NodeConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.node = Node(cfg)
        self.call(self.node.start)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def bounded() -> Any:
            return await fn(*args)

        return asyncio.run_coroutine_threadsafe(bounded(), self.loop).result(30)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def wrapper() -> Any:
            return fn(*args)

        return self.call(wrapper)

    def close(self) -> None:
        try:
            self.call(self.node.stop, False)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def statuses_while_blocked(monkeypatch: pytest.MonkeyPatch, thread: bool) -> tuple[set[int], int]:
    """B's views of A while A's loop is blocked, and how many Pings A's responder answered."""
    monkeypatch.setenv("HANDOFFD_PROBE_THREAD", "1" if thread else "0")
    cluster = unique_cluster()
    lan = MembershipConfig.lan()
    a = LoopNode(
        NodeConfig.for_tests("a", cluster=cluster, port=0, capacity={"cpu": 1.0}, membership=lan)
    )
    b = None
    try:
        b = LoopNode(
            NodeConfig.for_tests(
                "b",
                cluster=cluster,
                port=0,
                capacity={"cpu": 1.0},
                seeds=(a.node.address,),
                membership=lan,
            )
        )

        def b_sees_a() -> int | None:
            member = b.run(b.node.membership.get, "a")
            return None if member is None else member.status

        wait_for(lambda: b_sees_a() == m.ALIVE, 30, what="b sees a ALIVE")
        wait_for(
            lambda: a.run(lambda: (s := a.node.membership.get("b")) and s.status) == m.ALIVE,
            30,
            what="a sees b ALIVE",
        )
        answered_before = a.node._responder.answered if thread else 0
        unblocked = threading.Event()
        a.loop.call_soon_threadsafe(time.sleep, BLOCK_S)  # user code on the loop, say
        a.loop.call_soon_threadsafe(unblocked.set)
        seen: set[int] = set()
        while not unblocked.is_set():
            status = b_sees_a()
            if status is not None:
                seen.add(status)
            time.sleep(0.01)
        answered = (a.node._responder.answered - answered_before) if thread else 0
        return seen, answered
    finally:
        if b is not None:
            b.close()
        a.close()


def test_a_blocked_loop_is_not_suspected_while_its_probe_thread_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen, answered = statuses_while_blocked(monkeypatch, thread=True)
    assert seen == {m.ALIVE}, [m.STATUS_NAMES[s] for s in seen]
    assert answered > 0  # the thread answered while the loop could not


def test_control_the_same_block_is_suspected_when_the_loop_answers_probes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen, _ = statuses_while_blocked(monkeypatch, thread=False)
    assert seen & {m.SUSPECT, m.DEAD}, [m.STATUS_NAMES[s] for s in seen]

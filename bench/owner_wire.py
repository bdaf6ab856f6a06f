"""The owner daemon's work a task between the wire and its scheduler, for another node's tasks
(W1's and W2's half run off the owner's node), in this process: ``OwnerIO`` over its real
scheduler with no cpu of its own and one live member ``b``. Each ``Dispatch`` it decides is built
(``daemon.dispatch``), encoded by the owner's codec and sent on a real ZeroMQ socket (inproc, the
transport's ``send_parts``); a stand-in for ``b`` reads it off the socket, answers it with the
``RepliedColumns`` and then ``ReportColumns`` of ``--batch`` tasks each that ``b``'s executor builds
(``executor_records.replied_message``, ``report_message``), encoded by ``b``'s codec; each of those
messages is decoded and routed by the node's real handler (``NodeRouting._on_frames``: codec,
admission, ``OwnerIO.handle``) and fed to the scheduler with the drain's ``flush``.

Prints the process CPU a task of the whole loop (the stand-in's share included). For what the
owner spends outside its scheduler, count instructions with callgrind at two ``--tasks`` and take
the difference: only the delivery of ``b``'s messages runs under ``operator.call``, so collecting
in it alone counts the owner's receive path (bytes to scheduler events), its scheduler and its
send path (instructions to bytes sent); take off the scheduler's share, the inclusive count of
the compiled ``handle_batch``::

    cd /tmp/x && valgrind --tool=callgrind --callgrind-out-file=cg.out \\
        --collect-atstart=no --toggle-collect=_operator_call \\
        CHECKOUT/.venv/bin/python COPY/bench/owner_wire.py --tasks 2000
    callgrind_annotate --inclusive=yes cg.out | grep -E 'PROGRAM TOTALS|_5handle_batch '
"""

from __future__ import annotations

import argparse
import operator
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import zmq  # noqa: E402
from owner_w3 import CPU, _Ledger, _Timer  # noqa: E402

from handoffd import admission  # noqa: E402
from handoffd.daemon.executor_records import (  # noqa: E402
    Task,
    done_report,
    replied_message,
    report_message,
)
from handoffd.daemon.node_routing import NodeRouting  # noqa: E402
from handoffd.daemon.owner import OwnerIO  # noqa: E402
from handoffd.protocol import codec as codec_module  # noqa: E402
from handoffd.protocol import columns  # noqa: E402
from handoffd.protocol import messages as m  # noqa: E402
from handoffd.protocol.messages_columns import DispatchColumns  # noqa: E402
from handoffd.scheduler.owner import OwnerScheduler  # noqa: E402
from handoffd.transport.zmq_transport import send_parts  # noqa: E402

OWNER, NODE = "a", "b"
ADDRESSES = {OWNER: "a:1", NODE: "b:1"}
VALUE = b"\x80\x05K\x01."  # pickle of 1: a no-op's result


class Port:
    """The owner's port: what it sends to ``b`` encoded and put on ``sock``."""

    name, address = OWNER, ADDRESSES[OWNER]

    def __init__(self, codec: codec_module.Codec, sock: zmq.Socket[Any], member: Any) -> None:
        self.codec, self.sock, self._member = codec, sock, member
        self.clock = 100.0
        self.sent: list[tuple[Any, int]] = []
        self.replies: list[Any] = []
        self.soon: list[tuple[Any, tuple[Any, ...]]] = []  # (callbacks due now: intake slices)

    def now(self) -> float:
        return self.clock

    def send(self, address: str, msg: Any, frames: Any = None, term: int = 0) -> bool:
        encoded = self.codec.encode(msg, sender=OWNER, term=term, frames=frames or ())
        send_parts(self.sock, encoded)
        self.sent.append((msg, term))
        return True

    def reply(self, conn: bytes, msg: Any, frames: Any = None) -> None:
        self.replies.append(msg)

    def address_of(self, name: str) -> str | None:
        return ADDRESSES.get(name)

    def call_later(self, delay: float, callback: Any, *args: Any) -> _Timer:
        if delay <= 0:
            self.soon.append((callback, args))
        return _Timer()

    def call_soon(self, callback: Any, *args: Any) -> _Timer:
        self.soon.append((callback, args))
        return _Timer()

    def run_soon(self) -> None:
        """The loop's next turn: what was due now (the next slice of a run's intake)."""
        soon, self.soon = self.soon, []
        for callback, args in soon:
            callback(*args)

    def member(self, name: str) -> m.MemberState | None:
        return self._member if name == NODE else None

    def members(self) -> list[m.MemberState]:
        return [self._member]


class Node:
    """What ``NodeRouting._on_frames`` reads of its node for a member's message to the owner."""

    name = OWNER
    ops = None
    dropped = 0

    def __init__(self, codec: codec_module.Codec, owner: OwnerIO, member: Any) -> None:
        self.codec, self.owner = codec, owner
        self.membership = {NODE: member}
        self.drops = admission.Drops()


def _answers(
    sock: zmq.Socket[Any], sent: list[tuple[Any, int]], batch: int, codec: Any, state: list[int]
) -> list[list[Any]]:
    """``b``'s part: each dispatch read off the socket, answered and reported, encoded."""
    out: list[list[Any]] = []
    for msg, term in sent:
        sock.recv_multipart(copy=True)
        if not isinstance(msg, DispatchColumns):
            continue  # (the run's FreeRun at its end)
        attempts = columns.unpack("q", msg.attempts, len(msg.task_ids), "attempts")
        pairs = list(zip(msg.task_ids, attempts, strict=True))
        state[0] += 1
        ledger = _Ledger(free={CPU: 1e6}, version=state[0])
        answer = replied_message(msg.run_id, pairs, (), dict(ledger.free), ledger.version)
        out.append(codec.encode(answer, sender=NODE, term=term))
        for at in range(0, len(pairs), batch):
            entries = []
            for task_id, attempt in pairs[at : at + batch]:
                task = Task(
                    msg.run_id, task_id, attempt, "a:1", {}, [], "variadic", None, b"", (), {}
                )
                entries.append((done_report(task, 5, (7, 1.0, 1.0), 1e-5), VALUE, ""))
            state[0] += 1
            ledger = _Ledger(free={CPU: 1e6}, version=state[0])
            report, frames = report_message(msg.run_id, entries, ledger)
            out.append(codec.encode(report, sender=NODE, term=term, frames=frames))
    return out


def _deliver(node: Node, owner: OwnerIO, messages: list[list[Any]]) -> None:
    """The owner's part: each of ``b``'s messages through the node's handler, a drain each."""
    on_frames = NodeRouting._on_frames
    for frames in messages:
        on_frames(node, b"b-conn", frames, True)  # type: ignore[arg-type]
        owner.flush()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, default=2000, help="per run")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--batch", type=int, default=20, help="reports per ReportColumns")
    args = p.parse_args()
    ctx = zmq.Context()
    out, into = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    out.linger = into.linger = 0
    out.bind("inproc://owner-wire")
    into.connect("inproc://owner-wire")
    member = m.MemberState(NODE, ADDRESSES[NODE], "default", 1, m.ALIVE, {CPU: 1e6}, {CPU: 1e6}, 1)
    owner_codec, node_codec = codec_module.Codec(), codec_module.Codec()
    port = Port(owner_codec, out, member)
    owner = OwnerIO(
        port,  # type: ignore[arg-type]
        OwnerScheduler(port.name, now=port.now()),
        resources=_Ledger(capacity={CPU: 0.0}, free={CPU: 0.0}),
        local_value=lambda run_id, task_id: None,
        keep_results_s=30.0,
        keep_status_s=5.0,
    )
    owner.batch_reports = True
    owner.member_update(member)
    node = Node(owner_codec, owner, member)
    state = [1]
    started = time.process_time()
    for r in range(args.runs):
        run_id = f"r{r}"
        metas = tuple(
            m.TaskMeta(f"t{i}", (), {CPU: 1.0}, "variadic", None, None, False, None, None, 0)
            for i in range(args.tasks)
        )
        msg = m.SubmitAndWait(7, run_id, metas, 0, "binpack", None, 30.0, 1 << 20, True)
        owner.handle(msg, [b"code"] * args.tasks, b"client", None)
        owner.flush()
        while port.sent or port.soon:
            port.run_soon()
            sent, port.sent = port.sent, []
            messages = _answers(into, sent, args.batch, node_codec, state)
            operator.call(_deliver, node, owner, messages)
        if not (port.replies and isinstance(port.replies[-1], m.RunOutcome)):
            raise RuntimeError(f"run {run_id} was not answered with its outcome")
        port.replies.clear()
        owner.forget(run_id)
    took = time.process_time() - started
    if node.dropped or owner_codec.stats.dropped:
        raise RuntimeError(f"dropped: {node.dropped} {dict(owner_codec.stats.dropped)}")
    total = args.tasks * args.runs
    print(f"{total} tasks, reports of {args.batch}: {took / total * 1e6:.2f} us/task")
    out.close()
    into.close()
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())

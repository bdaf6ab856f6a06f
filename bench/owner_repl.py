"""The owner's side of replication in recorded W1 rounds, replayed in one process (issue 13, item 5).

    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/owner_replay.py record OUT.pkl [--rounds 2]
    cd /tmp && .venv/bin/python THIS_CHECKOUT/bench/owner_repl.py OUT.pkl --rounds K [--mode M]
    valgrind --tool=callgrind ... owner_repl.py OUT.pkl --rounds K --mode M   (K and K-1: subtract)

Replays the owner's recorded scheduler calls (``owner_replay.py``'s recording) with the
scheduler's replication feed (``on_changes``) wired as in a daemon (``daemon.ports.wire``) to a
real ``ReplicationIO`` over a port that encodes what it sends as ``Node.send`` does (the codec,
once a message) and keeps a timer queue on the recorded clock: each call's ``now`` fires the
flushes due by then first, as the loop would between two batches. One standby, ``d1``, acks
every log batch before the owner's next call (a daemon's d1 acks about 5 in 6). What is NOT
measured: the run's snapshot (a daemon splices W1's from the upload's bytes; the replay has no
upload, so the snapshot send is left out and acked at once), leases (per time, not per task), the
transport's send. ``--mode``: ``off`` (the moves go to a list, as ``owner_replay.py``), ``feed``
(the log and its flush timer, batches made but not built), ``full`` (and each batch built:
``delta_rows``, the message, the encode, the acks' handling). ``full`` minus ``off`` is the
owner's replication a task; ``--check`` compares every scheduler answer with the recorded one
and prints a digest of every encoded batch (the same on two builds: the same bytes sent).
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import itertools
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


class ReplayPort:
    """A ``MembersPort`` on the recorded clock: sends are encoded (once a message, as
    ``NodeRouting.send``) and kept for the standby's acks; timers fire when the clock passes."""

    def __init__(self, digest: Any) -> None:
        from handoffd.protocol import codec
        from handoffd.protocol import messages as m

        self.name, self.address = "d0", "d0:1"
        self.clock = 0.0
        self._codec = codec.Codec()
        self._timers: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._members = {
            n: m.MemberState(n, f"{n}:1", "bench", 1, m.ALIVE, {"cpu": 1.0}, {"cpu": 1.0}, 0)
            for n in ("d0", "d1")
        }
        self.logs: list[Any] = []  # ReplicateLog sent, acked before the next call
        self.sent = 0
        self.bytes = 0
        self.digest = digest

    def now(self) -> float:
        return self.clock

    def send(self, address: str, msg: Any, frames: list[Any] | None = None, term: int = 0) -> bool:
        encoded = self._codec.encode(
            msg, sender=self.name, incarnation=1, term=term, frames=frames or ()
        )
        self.sent += 1
        self.bytes += sum(len(f) for f in encoded)
        if self.digest is not None:
            for f in encoded:
                self.digest.update(bytes(f))
        if type(msg).__name__ == "ReplicateLog":
            self.logs.append(msg)
        return True

    def address_of(self, name: str) -> str | None:
        member = self._members.get(name)
        return member.address if member is not None else None

    def member(self, name: str) -> Any:
        return self._members.get(name)

    def members(self) -> list[Any]:
        return list(self._members.values())

    def call_later(self, delay: float, callback: Any, *args: Any) -> Any:
        return self._at(self.clock + max(delay, 0.0), callback, args)

    def call_soon(self, callback: Any, *args: Any) -> Any:
        return self._at(self.clock, callback, args)

    def _at(self, due: float, callback: Any, args: tuple[Any, ...]) -> Any:
        timer = _Timer(callback, args)
        heapq.heappush(self._timers, (due, next(self._seq), timer))
        return timer

    def advance(self, to: float) -> None:
        """The loop between two batches: every timer due by ``to`` fires, in time order."""
        self.clock = max(self.clock, to)
        timers = self._timers
        while timers and timers[0][0] <= self.clock:
            _, _, timer = heapq.heappop(timers)
            if not timer.cancelled:
                timer.callback(*timer.args)


class _Timer:
    __slots__ = ("args", "callback", "cancelled")

    def __init__(self, callback: Any, args: tuple[Any, ...]) -> None:
        self.callback, self.args, self.cancelled = callback, args, False

    def cancel(self) -> None:
        self.cancelled = True


def replay(path: str, rounds: int, mode: str, check: bool) -> None:
    from _peers.owner_record import summary
    from owner_replay import load

    from handoffd.protocol import codec
    from handoffd.protocol import messages as m
    from handoffd.scheduler import events as ev

    calls, starts, end, scheduler = load(path, rounds)
    digest = hashlib.sha256() if check else None
    port = ReplayPort(digest)
    lo, hi = codec.default_codec.versions
    moves: list[Any] = []
    rep: Any = None
    if mode == "off":
        scheduler.on_changes = moves.extend
    else:
        rep = _replication_class()(port, scheduler, replicas=1, grace=0.1)
        if mode == "feed":
            rep._send_log = lambda ins: port.logs.append(ins)  # (the batch made, not built)
        scheduler.on_change = rep.task_changed
        scheduler.on_changes = rep.tasks_changed
    differ = batches = 0
    for name, args, said in calls[:end]:
        if rep is not None:
            now = args[1] if name == "handle_batch" else args[-1]
            if isinstance(now, float):
                port.advance(now)
            for msg in port.logs:  # d1's acks of what went out since the last call
                seq = msg.seq
                batches += 1
                if mode == "full":
                    envelope = codec.Envelope(lo, hi, 0, "d1", 1, msg.term, 0)
                    rep.handle(m.ReplicaAcked(msg.run_id, msg.term, seq, False), [], envelope)
            port.logs.clear()
        got = getattr(scheduler, name)(*args)
        if check and isinstance(got, list) and summary(got) != said:
            differ += 1
        moves.clear()
        if rep is not None and name == "handle_batch":
            for e in args[0]:
                if type(e) is ev.RunSubmitted:
                    run_id = e.run_id
                    if scheduler.run_state(run_id) is not None:
                        rep.run_accepted(run_id, lambda: None)
                        term = scheduler.term_of(run_id) or 0
                        envelope = codec.Envelope(lo, hi, 0, "d1", 1, term, 0)
                        rep.handle(m.ReplicaAcked(run_id, term, 0, False), [], envelope)
                elif type(e) is ev.ResultsReleased:
                    rep.released(e.run_id)
    if rep is not None:
        port.advance(port.clock + 1.0)
    print(f"replayed {end} calls ({rounds} rounds after the warm-up), mode {mode}")
    if check:
        print(f"{differ} scheduler answers differ")
    if rep is not None:
        print(f"log batches {batches}, messages sent {port.sent}, bytes {port.bytes:,}")
    if digest is not None and mode == "full":
        print(f"digest of every message sent: {digest.hexdigest()[:16]}")


def _replication_class() -> Any:
    from handoffd.daemon import replication as shell

    class Replication(shell.ReplicationIO):
        """The shell as it is, but for the run's snapshot: not packed (see the module's note)."""

        def _send_snapshot(self, ins: Any, encoded: Any, as_built: bool = False) -> None:
            return None

        @staticmethod
        def _off_loop(run: Any, columns: int) -> bool:
            return False

    return Replication


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mode", choices=("off", "feed", "full"), default="full")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    replay(args.path, args.rounds, args.mode, args.check)


if __name__ == "__main__":
    main()

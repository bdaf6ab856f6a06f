"""The executor's state machine under random event sequences (hypothesis): dispatches as items,
received columns or our own owner's table, outcomes, cancels, fetch answers and time-outs, frees and
takeovers, against a model worker pool. Split from test_executor_state.py (its examples and helpers)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_executor_state import (
    ME,
    OWNER,
    PEER,
    PEER2,
    from_peer,
    here,
    item,
    of,
    per_task,
)

from handoffd._core.api import EPS
from handoffd.daemon.executor_events import (
    AnsweredHere,
    CancelAsked,
    CancelJob,
    CancelTimer,
    Dispatched,
    Execute,
    Instruction,
    LedgerChanged,
    NewOwner,
    OwnerSeen,
    ReportedHere,
    RunFreed,
    SendMessage,
    SetTimer,
    Soon,
    TaskEnded,
    ValuesArrived,
    ValuesAsked,
    ValuesFreed,
)
from handoffd.daemon.executor_records import here_message
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.protocol.columns import (
    DispatchTable,
    dispatch_columns,
)
from handoffd.protocol.messages_columns import RepliedColumns, ReportColumns
from handoffd.store.store import ResultStore
from handoffd.worker._records import expand
from handoffd.worker.ledger import Ledger
from handoffd.worker.pool import Outcome

# -- random event sequences -----------------------------------------------------------------------

COSTS = [
    {"cpu": 1.0},
    {"cpu": 1.0},
    {"cpu": 0.5},
    {"cpu": 1.0, "gpu": 1.0},
    {"cpu": 2.0},
    {"cpu": 9.0},
]
RUNS = ["r0", "r1"]
DEPS = ["d0", "d1", "d2"]


class ExecutorMachine(RuleBasedStateMachine):
    """Random dispatches, outcomes, cancels, fetch answers and time-outs, frees and takeovers,
    against a model worker pool (chains run their jobs in order; outcomes arrive later)."""

    def __init__(self) -> None:
        super().__init__()
        self.capacity = {"cpu": 2.0, "gpu": 1.0}
        self.st = ExecutorState(
            address=ME,
            ledger=Ledger(self.capacity),
            store=ResultStore(memory_limit=1 << 30),
            inline_result_bytes=8,
            fetch_timeout=1.0,
            queue_factor=3.0,
        )
        self.now = 0.0
        self.attempts = 0
        self.terms = dict.fromkeys(RUNS, 1)
        self.owners = dict.fromkeys(RUNS, OWNER)
        self.chains: dict[int, list[Hashable]] = {}  # the model pool: chain -> keys not ended
        self.outcomes: list[Outcome] = []  # ended in the pool, not delivered yet
        self.soon: list[Any] = []
        self.timers: dict[int, tuple[float, Any]] = {}
        self.executed: set[Hashable] = set()
        self.accepted: set[tuple[str, str, int]] = set()
        self.refused: set[tuple[str, str, int]] = set()
        self.reported: dict[tuple[str, str, int], int] = {}

    # -- carrying instructions out, as the shell would ------------------------------------------
    def apply(self, out: list[Instruction]) -> None:
        for ins in out:
            if isinstance(ins, Execute):
                chain = self.chains.setdefault(ins.chain, [])
                for job in expand(ins.jobs):
                    assert job.key not in self.executed, f"{job.key} started twice"
                    assert job.key in self.accepted, f"{job.key} started but never accepted"
                    self.executed.add(job.key)
                    chain.append(job.key)
            elif isinstance(ins, SendMessage):
                if isinstance(ins.msg, (m.DispatchReplied, RepliedColumns, ReportColumns)):
                    assert ins.address != ME, "a message to our own node's owner, not a record"
                self.sent(per_task(ins.msg))
            elif isinstance(ins, (AnsweredHere, ReportedHere)):
                if isinstance(ins, ReportedHere):  # the run's owner now is on our node
                    known = self.st.run_owners.get(ins.run_id)  # (None: the run was freed)
                    assert known is None or known[:2] == (ins.term, ME)
                self.sent(here_message(ins)[0])
            elif isinstance(ins, Soon):
                self.soon.append(ins.event)
            elif isinstance(ins, SetTimer):
                self.timers[ins.key] = (ins.at, ins.event)
            elif isinstance(ins, CancelTimer):
                self.timers.pop(ins.key, None)
            elif isinstance(ins, CancelJob):
                for keys in self.chains.values():
                    if ins.key in keys:
                        keys.remove(ins.key)
                        self.outcomes.append(
                            Outcome(ins.key, False, None, "Cancelled", "", kind="cancelled")
                        )
            else:
                assert isinstance(ins, (LedgerChanged, NewOwner)), ins

    def sent(self, msg: Any) -> None:
        if isinstance(msg, m.DispatchReplied):
            for a in msg.accepted:
                self.accepted.add((msg.run_id, a.task_id, a.attempt))
            for r in msg.refused:
                key = (msg.run_id, r.task_id, r.attempt)
                assert key not in self.executed
                self.refused.add(key)
        elif isinstance(msg, m.TasksReported):
            for r in msg.reports:
                key = (msg.run_id, r.task_id, r.attempt)
                assert key in self.accepted, f"{key} reported but never accepted"
                self.reported[key] = self.reported.get(key, 0) + 1
                assert self.reported[key] == 1, f"{key} reported twice"

    def handle(self, event: Any) -> None:
        self.apply(self.st.handle(event, self.now))

    # -- rules -------------------------------------------------------------------------------------
    @rule(
        run=st.sampled_from(RUNS),
        costs=st.lists(st.sampled_from(COSTS), min_size=1, max_size=5),
        deps=st.lists(st.sampled_from([None, *DEPS, "local", "inline"]), min_size=5, max_size=5),
        term_change=st.sampled_from([0, 0, 0, -1, 1]),
        way=st.sampled_from(["items", "columns", "here"]),
    )
    def dispatch(self, run: str, costs: list, deps: list, term_change: int, way: str) -> None:
        """``way``: "columns" as a node receives it from another (a ``DispatchTable``), "here"
        as the owner on our own node hands it over (``dispatch_here``)."""
        term = self.terms[run] + term_change
        owner = self.owners[run]
        if term_change > 0:  # the run moves to another owner: every other one on our node
            self.terms[run] = term
            owner = self.owners[run] = ME if term % 2 == 0 else f"owner{term}:1"
        items = []
        for cost, dep in zip(costs, deps, strict=False):
            self.attempts += 1
            inputs: tuple[m.InputRef, ...] = ()
            if dep == "local":  # a value this node produced (or once did)
                inputs = (from_peer(f"t{self.attempts - 1}", ME, PEER),)
            elif dep == "inline":  # an inline function (frame 0) fed by a fetched value
                inline = m.InputRef("inline", "i", (), 0, "variadic", -1)
                inputs = (inline, m.InputRef("value", DEPS[0], (PEER,), -1, "variadic", 0))
            elif dep is not None:
                inputs = (from_peer(dep, PEER, PEER2),)
            items.append(item(f"t{self.attempts}", cost, self.attempts, inputs))
        stale = run in self.st.run_owners and term < self.st.term_of(run)
        msg: Any = m.DispatchTasks(run, owner, tuple(items))
        frames = [b"p"]
        if way == "columns":
            msg = DispatchTable(dispatch_columns(msg))
        elif way == "here":
            msg, frames = here(msg, frames)
        self.handle(Dispatched(msg, frames, term))
        if stale:  # fenced: a deposed owner's dispatch is refused whole
            assert not any((run, i.task_id, i.attempt) in self.accepted for i in items)

    @precondition(lambda self: self.st.tasks)
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        """A dispatch delivered twice while its task is still here."""
        run, task_id, attempt = data.draw(st.sampled_from(sorted(self.st.tasks)))
        task = self.st.task_records()[(run, task_id, attempt)]
        again = item(task_id, task.cost, attempt, task.inputs)
        term = self.terms[run]
        self.handle(Dispatched(m.DispatchTasks(run, self.owners[run], (again,)), [b"p"], term))

    @precondition(lambda self: any(self.chains.values()))
    @rule(data=st.data(), kind=st.sampled_from(["", "", "", "big", "error", "crash", "timeout"]))
    def job_ends(self, data: st.DataObject, kind: str) -> None:
        chain = data.draw(st.sampled_from(sorted(c for c, keys in self.chains.items() if keys)))
        key = self.chains[chain].pop(0)  # the head: a chain's jobs run in order
        if not self.chains[chain]:
            del self.chains[chain]
        if kind in ("", "big"):
            value = b"v" * (100 if kind else 4)
            self.outcomes.append(Outcome(key, True, value, duration=0.002))
        else:
            self.outcomes.append(Outcome(key, False, None, "E", "m", kind=kind, duration=0.001))

    @precondition(lambda self: self.outcomes)
    @rule()
    def outcome_arrives(self) -> None:
        self.handle(TaskEnded(self.outcomes.pop(0)))

    @precondition(lambda self: self.soon)
    @rule()
    def soon_runs(self) -> None:
        self.handle(self.soon.pop(0))

    @precondition(lambda self: self.st.tasks)
    @rule(data=st.data(), stale=st.booleans())
    def cancel(self, data: st.DataObject, stale: bool) -> None:
        run, task_id, attempt = data.draw(st.sampled_from(sorted(self.st.tasks)))
        msg = m.CancelTasks(run, (m.TaskAttempt(task_id, attempt),))
        term = self.terms[run] - stale
        fenced = term < self.st.term_of(run)
        out = self.st.handle(CancelAsked(msg, term), self.now)
        if fenced:  # a deposed owner's cancel is ignored
            assert out == [] and (run, task_id, attempt) in self.st.tasks
        self.apply(out)

    @precondition(lambda self: self.st.fetches)
    @rule(data=st.data(), found=st.booleans())
    def fetch_answered(self, data: st.DataObject, found: bool) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.st.fetches)))
        fetch = self.st.fetches[request_id]
        if found:
            msg = m.ValuesFetched(request_id, fetch.run_id, fetch.task_ids, ())
            self.handle(ValuesArrived(msg, [b"value"] * len(fetch.task_ids)))
        else:
            self.handle(
                ValuesArrived(m.ValuesFetched(request_id, fetch.run_id, (), fetch.task_ids), [])
            )

    @precondition(lambda self: self.timers)
    @rule()
    def time_passes(self) -> None:
        key = min(self.timers, key=lambda k: self.timers[k][0])
        at, event = self.timers.pop(key)
        self.now = max(self.now, at)
        self.handle(event)

    @rule(
        run=st.sampled_from(RUNS),
        what=st.sampled_from(["values", "run"]),
        back=st.integers(0, 3),
        stale=st.booleans(),
    )
    def free(self, run: str, what: str, back: int, stale: bool) -> None:
        term = self.terms[run] - stale
        if what == "run":
            self.handle(RunFreed(m.FreeRun(run), term))
        else:
            ids = (*DEPS[:2], f"t{self.attempts - back}")  # fetched copies and a local value
            self.handle(ValuesFreed(m.FreeValues(run, ids), term))

    @rule(run=st.sampled_from(RUNS), back=st.integers(0, 3))
    def peer_asks(self, run: str, back: int) -> None:
        ids = (DEPS[0], f"t{self.attempts - back}")
        out = self.st.handle(ValuesAsked(m.FetchValues(99, run, ids, PEER)), self.now)
        ((send,),) = [of(out, SendMessage)]
        assert send.address == PEER and len(send.frames) == len(send.msg.task_ids)
        assert set(send.msg.task_ids) | set(send.msg.missing) == set(ids)
        for task_id, frame in zip(send.msg.task_ids, send.frames, strict=True):
            assert self.st.store.get(run, task_id) == frame

    @rule(run=st.sampled_from(RUNS))
    def takeover(self, run: str) -> None:
        self.terms[run] += 1
        self.owners[run] = ME if self.terms[run] % 2 == 0 else f"owner{self.terms[run]}:1"
        self.handle(OwnerSeen(run, self.terms[run], self.owners[run], f"n{self.terms[run]}"))

    # -- invariants --------------------------------------------------------------------------------
    @invariant()
    def the_ledger_never_over_commits(self) -> None:
        ledger = self.st.ledger
        ledger.validate()
        held: dict[str, float] = {}
        for slot in self.st.slots.values():  # one claim per slot
            for kind, q in slot.cost.items():
                held[kind] = held.get(kind, 0.0) + q
        for (
            task
        ) in self.st.task_records().values():  # claimed, not started yet (inputs on their way)
            if task.claimed and task.slot is None:
                for kind, q in task.cost.items():
                    held[kind] = held.get(kind, 0.0) + q
        for kind, cap in self.capacity.items():
            assert held.get(kind, 0.0) <= cap + EPS, (held, self.capacity)
            assert abs(ledger.free[kind] - (cap - held.get(kind, 0.0))) < EPS, (ledger.free, held)
        for chain, keys in self.chains.items():  # a job still in the pool runs under its claim
            assert not keys or chain in self.st.slots, f"slot {chain} released, {keys} still run"
        gpus = [g for slot in self.st.slots.values() for g in slot.gpus]
        assert len(gpus) == len(set(gpus)) and len(gpus) + len(ledger._gpus_free) <= 1

    def teardown(self) -> None:
        """Let everything settle: every accepted attempt is reported once, nothing stays held."""
        for _ in range(10_000):
            if self.soon:
                self.soon_runs()
            elif self.outcomes:
                self.outcome_arrives()
            elif any(self.chains.values()):
                chain = next(c for c, keys in self.chains.items() if keys)
                key = self.chains[chain].pop(0)
                self.outcomes.append(Outcome(key, True, b"v", duration=0.001))
            elif self.timers:
                self.time_passes()
            else:
                break
        self.the_ledger_never_over_commits()
        assert not self.st.tasks and not self.st.slots and not self.st.local
        assert self.st.ledger.idle()
        assert set(self.reported) == self.accepted, self.accepted ^ set(self.reported)
        assert not self.accepted & self.refused


TestExecutorMachine = ExecutorMachine.TestCase
TestExecutorMachine.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

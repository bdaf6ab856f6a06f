# cython: annotation_typing=False
# (the annotations are for mypy; rebalance.pxd beside it gives the compiled build its C types)
"""Re-placement of queued work: a part of the owner's scheduler (``OwnerScheduler``).

What may wait in a node's local queue: tasks the window top-up sent beyond the node's free
resources (``ClusterView._fill_windows``). Tasks known to be short drain within the time budget
and are left alone; a task of unknown or long duration may wait there behind other owners' work.
Those are remembered here (``sent``), per node, oldest first. When another node has free resources
(our view: reported free minus our unanswered dispatches) that no ready task took, ``offer`` asks
the node holding such a task to give it back (``Withdraw``), as many as fit the free node. Only a
confirmed withdrawal (``WithdrawAnswered``: the node dropped it from its queue unstarted) sends the
task back to READY -- no retry or loss used -- and the next placement pass puts it where it starts
now. A task the node already started stays there; a lost answer leaves the task ASSIGNED until the
probes for lost reports find it gone (``lost``). So no task ever runs twice because of this, and
the node's ledger never held a claim for what it gave back.

Pure, like the scheduler: answers are events, questions are instructions in the shared outbox.
"""

from __future__ import annotations

from collections.abc import Callable, Container

from handoffd.scheduler.cluster_view import EPS, QUEUE_SECONDS, ClusterView
from handoffd.scheduler.events import WithdrawAnswered
from handoffd.scheduler.outbox import Outbox
from handoffd.scheduler.run import ACTIVE, ASSIGNED, RUN_RUNNING, RunState, TaskRecord

Key = tuple[str, str, int]  # run_id, task_id, attempt


class Rebalance:
    def __init__(
        self,
        view: ClusterView,
        out: Outbox,
        *,
        run_of: Callable[[str], RunState | None],
        give_back: Callable[[RunState, TaskRecord, str], None],
        held: Container[str] = (),
    ) -> None:
        self._view = view
        self._out = out
        self._run_of = run_of
        self._give_back = give_back  # the owner: the node dropped it unstarted, place it again
        # Runs whose dispatch lease lapsed (the ready queue's ``held``): withdrawn, their tasks
        # would only wait here instead of in a node's queue, so they are left where they are.
        self._held = held
        # Invariant: node -> attempts sent to its queue that are worth moving, still ASSIGNED there.
        self.queued: dict[str, dict[Key, None]] = {}
        self.asked: dict[Key, str] = {}  # attempts we asked a node to withdraw, not answered yet
        self.moved = 0  # attempts withdrawn and placed again (stats)

    def sent(self, run: RunState, rec: TaskRecord, node: str) -> None:
        """``rec`` went to ``node``'s window (beyond its free resources): remember it when it may
        wait long there (unknown or long duration; not pinned, not in a group)."""
        if run.pin_of(rec.id) is not None or rec.id in run.group_of:
            return
        seconds = self._view.durations.estimate_task(rec)
        if 0.0 <= seconds <= QUEUE_SECONDS:
            return
        keys = self.queued.get(node)
        if keys is None:
            keys = self.queued[node] = {}
        keys[(run.run_id, rec.id, rec.attempt)] = None

    def sent_all(
        self,
        run: RunState,
        recs: list,  # type: ignore[type-arg]
        node: str,
        seconds: list[float] | None = None,
    ) -> None:
        """``sent(run, rec, node)`` for each of ``recs`` in order (a block of the window fill):
        the pin read from the record in hand (``pin_of``'s first look-up is this record), the
        node's keys looked up once. ``seconds``: each task's estimate as the walk charged it, an
        unknown one as ``UNKNOWN_CHARGE``, which is above ``QUEUE_SECONDS`` as an unknown
        estimate (-1) is below 0: either way the task is remembered."""
        group_of = run.group_of
        durations = self._view.durations
        keys: dict[Key, None] | None = None
        run_id = run.run_id
        short = QUEUE_SECONDS  # (compiled: a C double read once, not a module look-up and a
        # float made a task for the compare)
        for i in range(len(recs)):
            rec = recs[i]
            task_id = rec.id
            if rec.pin is not None or (group_of and task_id in group_of):
                continue  # (not in a group: ``pin_of`` is the record's own pin)
            if seconds is not None:
                took = seconds[i]
            else:
                took = durations.estimate_keys(rec.duration_key, rec.shape_key)
            if 0.0 <= took <= short:
                continue
            if keys is None:
                keys = self.queued.get(node)
                if keys is None:
                    keys = self.queued[node] = {}
            keys[(run_id, task_id, rec.attempt)] = None

    def came_back(self, node: str, key: Key) -> None:
        """The attempt left ``node`` (finished, lost, cancelled, withdrawn)."""
        keys = self.queued.get(node)
        if keys is not None and key in keys:
            del keys[key]
            self.asked.pop(key, None)
            if not keys:
                del self.queued[node]

    def drop_run(self, run_id: str) -> None:
        for node in list(self.queued):
            keys = self.queued[node]
            for key in [k for k in keys if k[0] == run_id]:
                del keys[key]
                self.asked.pop(key, None)
            if not keys:
                del self.queued[node]

    def offer(self) -> None:
        """Nodes with free resources left after placement: ask for queued attempts elsewhere
        that fit them (oldest first), each at most once. Which ones is the placement core's
        choice (``take``: in order, each that fits what the earlier ones left).

        Only live nodes with effective free are looked at (the room index keeps them), and the
        candidates (queued, not asked, not of a held run) are gathered once per call, only when
        there is such a node: O(queued + free nodes) plus the core's choice per free node, where
        rebuilding the candidates for every live node made each placement pass O(nodes x
        queued) on a big cluster."""
        view = self._view
        if view.indexed:  # the live nodes with effective free (``room_index``)
            rooms = view._rooms
            rooms.refresh(view)
            if not rooms.any_free():
                return
        take = view._core.take
        held = self._held
        holders: list[str] = []
        keys: list[Key] = []
        costs: list[dict[str, float]] = []
        for holder, queued in self.queued.items():
            for key in queued:
                if key in self.asked or (held and key[0] in held):
                    continue
                run = self._run_of(key[0])
                rec = run.tasks.get(key[1]) if run is not None else None
                if rec is not None:
                    holders.append(holder)
                    keys.append(key)
                    costs.append(rec.cost)
        left = len(keys)
        if not left:
            return
        if view.indexed:
            names = view._rooms.with_free()
        else:
            names = [name for name, node in view.nodes.items() if node.alive]
        for name in names:
            free = view.effective_free(name)
            if not any(q > EPS for q in free.values()):
                continue
            # the candidates still open, in the order gathered, minus this node's own
            open_ = [i for i in range(len(keys)) if holders[i] != name and holders[i] != ""]
            if not open_:
                continue
            for j in take(free, [costs[i] for i in open_]):
                i = open_[j]
                self.asked[keys[i]] = holders[i]
                self._out.withdraws.setdefault((holders[i], keys[i][0]), []).append(keys[i][1:])
                holders[i] = ""  # asked: no longer open
                left -= 1
            if not left:
                return

    def answered(self, ev: WithdrawAnswered) -> None:
        for task_id, attempt in ev.kept:  # started there: it stays and reports
            self.came_back(ev.node, (ev.run_id, task_id, attempt))
        run = self._run_of(ev.run_id)
        for task_id, attempt in ev.withdrawn:
            key = (ev.run_id, task_id, attempt)
            self.came_back(ev.node, key)
            rec = run.tasks.get(task_id) if run is not None else None
            if (
                run is not None
                and run.state == RUN_RUNNING
                and rec is not None
                and rec.state == ASSIGNED
                and rec.attempt == attempt
                and rec.node == ev.node
            ):
                self.moved += 1
                self._give_back(run, rec, f"withdrawn unstarted from {ev.node}: placed again")

    def validate(self) -> None:
        for node, keys in self.queued.items():
            assert keys, f"empty queued entry for {node}"
            for run_id, task_id, attempt in keys:
                run = self._run_of(run_id)
                assert run is not None, f"queued attempt of unknown run {run_id}"
                rec = run.tasks[task_id]
                assert rec.state in ACTIVE, (task_id, rec.state)
                assert rec.node == node and rec.attempt == attempt, (task_id, rec.node, node)
        for key, node in self.asked.items():
            assert key in self.queued.get(node, {}), f"asked {key} of {node}, not queued there"

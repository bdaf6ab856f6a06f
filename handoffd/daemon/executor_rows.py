# cython: annotation_typing=False
# (the annotations are for mypy; executor_rows.pxd beside it gives the compiled build its C types)
"""The executing side's per-task loops on the way in: a plain table's tasks accepted from its
columns (``Intake._accept_table``'s loop: ``accept_columns``) and queued tasks chained behind
running slots (``ExecutorState._refill``: ``refill``), with the first job folded into the block
behind it (``_fold``).

Design note: these two loops are a W1 task's Python steps on the way in (~119 and ~129 bytecodes
a task, session 33): every task of a big run passes through each once, as a ``Row`` (a list read
and written by index), into ``tasks`` and ``local`` (dicts) and its slot's rows (a list, in
chain order: ``Slot.rows``). Compiled
(``setup.py EXECUTOR_COMPILED``) with executor_rows.pxd's types, each step is the list's or the
dict's own C call, not a bytecode dispatched by the interpreter; the records and their order are
those of the plain Python. This file is also its own pure-Python twin:
``tests/unit/test_executor_rows_build.py`` holds both builds to each other on random events."""

from __future__ import annotations

import math
from typing import Any

from handoffd import resources
from handoffd.daemon.executor_events import Execute
from handoffd.daemon.executor_records import (
    AGING_SECONDS,
    CHAIN_SCAN,
    NO_MISSING,
    R_COST,
    R_INCLUSION,
    R_PAYLOAD,
    R_QKEY,
    R_RUN,
    R_SLOT,
    R_TASK,
    R_TIMEOUT,
    Key,
    Slot,
    Task,
    failed,
)
from handoffd.worker._records import Job, JobBlock, new_job

_new = object.__new__
# A row's fields (``executor_records.Row``) as this module's own names: C indices in the compiled
# build (the .pxd), so a field's read is the list's own, not a global's look-up
_COST, _INCLUSION, _PAYLOAD, _RUN = R_COST, R_INCLUSION, R_PAYLOAD, R_RUN
_SLOT, _TASK, _TIMEOUT, _QKEY = R_SLOT, R_TASK, R_TIMEOUT, R_QKEY


def accept_columns(
    state: Any,
    t: Any,
    frames: list[Any],
    refused: list[tuple[str, int, str]],
    started: list[Task],
    queued: list[Key],
) -> None:
    """``Intake._accept_table``'s tasks of a plain table (``_fast``), read straight from its
    columns: each refused one appended to ``refused``, each to gather to ``started``, the key of
    each that joined the local queue to ``queued`` (in arrival order: ``QueueOrder.arrived``)."""
    run_id, owner_address = t.run_id, t.owner_address
    tasks, ledger, now, arrivals = state.tasks, state.ledger, state._now, state._arrivals
    local, total, limit = state.local, state._local_cost, state._queue_limit
    input_ids, input_frames, inclusions = t.input_task_ids, t.frames, t.inclusions
    timeouts, priorities, ranks = t.timeouts, t.priorities, t.ranks
    aged = math.floor(now / AGING_SECONDS)  # (``queue_key``'s, one ``now`` a table)
    fits_node: Any = None  # the last cost found to fit the node's capacity
    # ``fits_node``'s kind, quantity and queue limit (with the tolerance) when it has one
    only: str | None = None
    only_qty = only_top = 0.0
    # The queue's sum of ``only``'s kind kept here once a task added to it (``only_live``:
    # ``total[only]`` is then stale) and written back once (a float and a dict write a queued
    # task less; in the compiled build a C double), before anything else reads or writes
    # ``total``: the same additions in the same order as writing it each time
    only_sum = 0.0
    only_live = False
    eps, no_missing = resources.EPS, NO_MISSING
    # The last queued row's priority and rank (as the columns hold them) and its queue key's
    # first two parts (``queue_key``'s, of them)
    last_priority: Any = None
    last_rank: Any = None
    level: Any = None
    minus_rank: Any = None
    # The columns a task reads, each read by its index (in the compiled build a C index into
    # a list or tuple: no iterator step and no row tuple a task, as a zip of them made); their
    # lengths checked first, as a strict zip would. ``accepted`` is every task not refused, in
    # order: built from the columns at the end unless one was.
    task_ids, attempts, counts, costs = t.task_ids, t.attempts, t.counts, t.costs
    payloads, inclusion_of = t.payloads, t.inclusion
    n = len(task_ids)
    for column in (attempts, counts, costs, payloads, timeouts, inclusion_of, priorities, ranks):
        if len(column) != n:
            raise ValueError("a dispatch table's columns differ in length")
    at = 0  # where the task's inputs end (the counts summed)
    for i in range(n):
        task_id = task_ids[i]
        attempt = attempts[i]
        count = counts[i]
        at += count
        cost = costs[i]
        payload_frame = payloads[i]
        timeout = timeouts[i]
        inclusion = inclusion_of[i]
        priority = priorities[i]
        rank = ranks[i]
        key = (run_id, task_id, attempt)
        # A duplicate delivery (already ours) is skipped before anything changes: before a
        # claim; with tasks queued (no claim tried), where the task is kept (a queued row's
        # ``setdefault``: one look-up for both), or refused
        seen = not local
        if seen:
            if key in tasks:  # a duplicate delivery: already ours
                continue
            gpus = ledger.try_claim(cost)
        else:
            gpus = None
        summed = -1.0  # the queue's sum of ``only``'s kind with this task, when found
        if gpus is None:
            if cost is fits_node:  # (a table's tasks share cost dicts: the queue test only)
                reason = ""  # (``_queue_full`` in line: a call a queued task less)
                if only is not None:  # (a cost of one kind, most tasks')
                    # (two statements, not a conditional expression: in the compiled build
                    # the live sum stays a C double, not a float object a task)
                    if only_live:
                        summed = only_sum + only_qty
                    else:
                        summed = total.get(only, 0.0) + only_qty
                    if only_qty > 0 and summed > only_top:
                        reason = "no room: queue full"
                else:
                    for kind, qty in cost.items():
                        if qty > 0 and total.get(kind, 0.0) + qty > limit.get(kind, 0.0) + eps:
                            reason = "no room: queue full"
                            break
            else:
                if only_live:  # (written back: the queue test reads it)
                    total[only] = only_sum  # type: ignore[index]
                    only_live = False
                reason = state._queue_refusal(cost)
                fits_node = None if reason.endswith("capacity") else cost
                only = None
                if fits_node is not None and len(cost) == 1:
                    ((only, only_qty),) = cost.items()
                    only_top = limit.get(only, 0.0) + eps
            if reason:
                if not seen and key in tasks:  # a duplicate delivery: already ours
                    continue
                refused.append((task_id, attempt, reason))
                continue
        if gpus is None and not count:
            # Queued with no inputs (most of a big run's): kept as its row
            # (``executor_records.Row``), no ``Task``; the same steps as below otherwise
            row = [
                run_id,
                task_id,
                attempt,
                owner_address,
                cost,  # (the table's own: a row's cost is only read)
                inclusions[inclusion],
                None if timeout != timeout else timeout,
                frames[payload_frame],
                payload_frame,
                None,  # its queue key, set below
                None,  # its slot, once chained
                key,  # (its slot's rows end by position: ``executor_block``)
            ]
            if seen:
                tasks[key] = row
            elif tasks.setdefault(key, row) is not row:
                continue  # a duplicate delivery: already ours
            # (after the duplicate test: a duplicate takes no arrival number)
            if (priority is not last_priority and priority != last_priority) or (
                rank is not last_rank and rank != last_rank
            ):
                # (a table's tasks mostly share one priority and rank: the key's level and
                # rank parts made once for them, not two number objects a task)
                last_priority, last_rank = priority, rank
                level, minus_rank = aged - priority, -rank
            row[_QKEY] = qkey = (level, minus_rank, next(arrivals))  # (``queue_key``)
            local[key] = qkey
            queued.append(key)
            if summed >= 0.0:
                only_sum = summed  # (``total[only]``'s, written back at the end)
                only_live = True
            else:
                if only_live:
                    total[only] = only_sum  # type: ignore[index]
                    only_live = False
                for kind, qty in cost.items():
                    total[kind] = total.get(kind, 0.0) + qty
            continue
        if not seen and key in tasks:  # a duplicate delivery: already ours
            continue
        kept = {payload_frame: frames[payload_frame]}
        flat: tuple[Any, ...] = ()
        needs: tuple[str, ...] = ()
        if count:
            first = at - count
            numbers = input_frames[first:at]
            if numbers.count(-1) == count:  # every input a value to have here
                flat = needs = input_ids[first:at]
            else:
                keys = input_ids[first:at]
                flat = tuple([k if f < 0 else f for k, f in zip(keys, numbers, strict=True)])
                needs = tuple([k for k, f in zip(keys, numbers, strict=True) if f < 0])
                for f in numbers:
                    if f >= 0:
                        kept[f] = frames[f]
        # ``_task`` in line (a call and its head tuple a task less): every field set, in
        # ``Task``'s order, as ``_task`` sets it (change both)
        task = _new(Task)
        task.run_id = run_id
        task.task_id = task_id
        task.attempt = attempt
        task.owner_address = owner_address
        task.cost = dict(cost)
        task.gpus = [] if gpus is None else gpus  # (the claim's own list: not copied)
        task.argument_inclusion = inclusions[inclusion]
        task.timeout = None if timeout != timeout else timeout  # (NaN: none; ``t.timeout``)
        task.payload = kept[payload_frame]
        task.inputs = ()
        task.frames = kept
        task.missing = no_missing
        task.running = False
        task.claimed = gpus is not None
        task.slot = None
        task.bytes_in = 0
        task.payload_frame = payload_frame
        task.needs = needs
        task.far = ()
        task.flat = flat
        task.source = (t, at - count) if needs else None  # (its first input's index)
        task.qkey = qkey = (aged - priority, -rank, next(arrivals))  # (``queue_key``)
        tasks[key] = task  # (``_keep`` in line: a call a task less; the same steps)
        if gpus is None:
            local[key] = qkey
            queued.append(key)
            if summed >= 0.0:  # (the sum the queue test found: ``total`` is as it was)
                only_sum = summed
                only_live = True
            else:
                if only_live:
                    total[only] = only_sum  # type: ignore[index]
                    only_live = False
                for kind, qty in cost.items():  # (the task's cost: a copy of ``cost``)
                    total[kind] = total.get(kind, 0.0) + qty
        if needs or gpus is not None:  # (``_gather_all`` has nothing to do for the others)
            started.append(task)
    if only_live:
        total[only] = only_sum  # type: ignore[index]


def refill(state: Any) -> None:
    """Chain queued tasks behind running slots of the same cost (see the module docstring)."""
    if not state.slots:
        return
    target = state._chain_target()
    # Only slots down to half: each refill then sends a worker at least half a chain in one
    # pipe message (a refill per dispatch or per outcome cost a pipe write each).
    low = target // 2
    room: dict[int, int] = {}
    for s in state.slots.values():
        size = len(s.keys) + len(s.rows) - s.first  # (``Slot.size``)
        if size <= low:
            room[s.id] = target - size
    if not room:
        return
    slots = [state.slots[i] for i in room]
    # One slot down to half (a 1-cpu node's, W1's): its room as a local, no best-slot loop.
    only: Slot | None = slots[0] if len(slots) == 1 else None
    left = room[only.id] if only is not None else 0
    # ``only``'s cost when of one kind: a task it takes has that cost, given back to the
    # queue's sum with no loop
    kind1: str | None = None
    qty1 = 0.0
    if only is not None and len(only.cost) == 1:
        ((kind1, qty1),) = only.cost.items()
    # The queue's sum of ``kind1`` kept here once a row gave its cost back (``sum1_live``:
    # ``total[kind1]`` is then stale), written back before any other step reads or writes
    # ``total`` and at the end (as ``accept_columns``' ``only_sum``)
    sum1 = 0.0
    sum1_live = False
    chains: dict[int, list[Job | JobBlock]] = {}
    # ``only``'s jobs (every task taken then is its), and its cost, read once; its rows'
    # as blocks (``JobBlock``): the one being filled, what its rows share, its appends
    only_jobs: list[Job | JobBlock] = []
    block: JobBlock | None = None
    block_inclusion = ""
    block_timeout: float | None = None
    # ``block``'s three columns, appended to as lists (typed in the .pxd: the list's own append,
    # not a bound method called through the call protocol, three a row)
    block_keys: list[Any] = []
    block_payloads: list[Any] = []
    block_titles: list[str] = []
    only_cost = only.cost if only is not None else None
    # A cost found equal to ``only_cost``: a table's tasks share one cost dict, so the dicts
    # are compared once a table, not once a task
    same_cost: Any = only_cost
    total = state._local_cost
    scanned, scan = 0, CHAIN_SCAN
    local, tasks = state.local, state.tasks
    inputs: list[Any]
    best: Slot | None
    task: Any  # a ``Task``, or a ``Row`` (``row``: read by index)
    # ``only``'s memory (a task it takes has an equal cost), and the title's run part, built
    # once a run rather than once a task
    only_memory = only.cost.get("memory") if only is not None else None
    title_run: str | None = None
    title_head = ""
    # (``only``'s rows: a row it takes joins them, in chain order, with no key entry)
    only_rows: list[Any] = only.rows if only is not None else []
    only_devices = only.devices if only is not None else None
    # Each task is picked and started in one pass: what picks the next one (the queue, the
    # tasks, their ``missing``, the room left) is not changed by starting this one, so the
    # picks and their order are those of picking every task first.
    # The keys at the order's front that leave the queue in this pass (taken, or gone before)
    # are trimmed off it at the end: up to the first key that stays (``kept_from``), or the
    # one the pass stops at; the order then holds no key that left (``QueueOrder.arrived``)
    order = state.queue_order()
    at = -1  # the index in ``order`` of the key looked at
    kept_from = -1  # the index of the first key looked at that stays queued
    for key in order:
        at += 1
        task = tasks.get(key)
        if type(task) is list:
            # (a row is queued exactly while it has no slot: its key's look-up in ``local``
            # is that test, one dict look-up a task less)
            if task[_SLOT] is not None:
                continue
        elif key not in local:
            continue
        scanned += 1
        if scanned > scan:
            break
        if task is None:
            if kept_from < 0:
                kept_from = at
            continue
        if only is not None and type(task) is list:
            # A row into the one slot (W1's every task): the steps below for a row, in line
            # and in the same order, without the tests that only a ``Task`` or another slot
            # needs
            if left <= 0:
                break  # full
            cost = task[_COST]
            if cost is not same_cost:
                if only_cost != cost:
                    break  # another cost at the front: the claims drain to it
                same_cost = cost
            left -= 1
            del local[key]  # (``_unqueue_local`` in line: found in ``local`` above)
            if kind1 is not None:
                if sum1_live:  # (as ``accept_columns``' ``summed``: a C double throughout)
                    sum1 = sum1 - qty1
                else:
                    sum1 = total.get(kind1, 0.0) - qty1
                sum1_live = True
            else:
                for kind, qty in cost.items():
                    total[kind] = total.get(kind, 0.0) - qty
            task[_SLOT] = only
            only_rows.append(task)
            # Its job a row of the slot's current block (no ``Job``: the pool feeds the
            # block whole), a new block where its inclusion or timeout differs
            inclusion, timeout = task[_INCLUSION], task[_TIMEOUT]
            if block is None or (
                (inclusion is not block_inclusion and inclusion != block_inclusion)
                or (timeout is not block_timeout and timeout != block_timeout)
            ):
                block = JobBlock([], [], [], inclusion, timeout, only_devices, only_memory)
                block_inclusion, block_timeout = inclusion, timeout
                block_keys, block_payloads = block.keys, block.payloads
                block_titles = block.titles
                only_jobs.append(block)
            block_keys.append(key)
            block_payloads.append(task[_PAYLOAD])
            run_id = task[_RUN]
            if run_id is not title_run:
                title_run = run_id
                title_head = f"run {title_run} task "
            block_titles.append(title_head + task[_TASK])
            continue
        if sum1_live:  # (written back: the steps below read and write ``total``)
            total[kind1] = sum1  # type: ignore[index]
            sum1_live = False
        row = isinstance(task, list)  # a queued task's ``Row``: no inputs, none missing
        if row:
            cost = task[_COST]
        elif task.missing:
            if kept_from < 0:
                kept_from = at
            continue
        else:
            cost = task.cost
        if only is not None:
            if left <= 0 or only_cost != cost:
                break  # another cost (or full) at the front: the claims drain to it
            left -= 1
            slot = only
        else:
            best = None
            for s in slots:
                if s.cost == cost and room[s.id] > 0:
                    if best is None or room[s.id] > room[best.id]:
                        best = s
            if best is None:
                break  # another cost (or all full) at the front: the claims drain to it
            room[best.id] -= 1
            slot = best
        if row:
            inputs = []
        elif task.flat == () and not task.far:  # (``_take_inputs``' no-input case in line)
            task.bytes_in = len(task.payload)
            inputs = []
        else:
            try:
                inputs = state._take_inputs(task)
            except LookupError as exc:
                state._unqueue_local(key, task)
                tasks.pop(key, None)
                task.claimed = False
                state._finish(task, failed(task, "input_lost", "InputLost", str(exc)), None)
                continue
        if local.pop(key, None) is not None:  # (``_unqueue_local`` in line; no value is None)
            if kind1 is not None:  # (``only`` took it: its cost is ``only.cost``)
                total[kind1] = total.get(kind1, 0.0) - qty1
            else:
                for kind, qty in cost.items():
                    total[kind] = total.get(kind, 0.0) - qty
        # ``start_task``'s steps in line (a call a chained task less; the same steps in the same order);
        # a row's is its slot (running, claimed, the slot's gpus and its bytes in, its
        # payload's, follow from it: ``row_task``)
        if row:
            task[_SLOT] = slot
            payload, run_id, task_id = task[_PAYLOAD], task[_RUN], task[_TASK]
            inclusion, timeout = task[_INCLUSION], task[_TIMEOUT]
        else:
            task.running = True
            task.claimed = True
            task.slot = slot
            task.gpus = slot.gpus
            payload, run_id, task_id = task.payload, task.run_id, task.task_id
            inclusion, timeout = task.argument_inclusion, task.timeout
        if row:
            slot.rows.append(task)
        else:
            slot.keys[key] = None
        # ``new_job(...)`` as ``start_task`` calls it, in line (a call a chained task less; the
        # same slots: ``tests/unit/test_executor_table_records.py`` compares them)
        job = _new(Job)
        job.key = key
        job.payload = payload
        job.inputs = inputs
        job.argument_inclusion = inclusion
        job.timeout = timeout
        job.env = None
        job.devices = slot.devices
        job.memory = only_memory if slot is only else cost.get("memory")
        if run_id is not title_run:
            title_run = run_id
            title_head = f"run {title_run} task "
        job.title = title_head + task_id  # (``new_job``'s title)
        if only is not None:
            only_jobs.append(job)
            block = None  # (a row after it starts a block of its own)
            continue
        jobs = chains.get(slot.id)
        if jobs is None:
            chains[slot.id] = [job]
        else:
            jobs.append(job)
    else:
        at += 1  # (every key looked at: the pass stopped at none)
    if sum1_live:
        total[kind1] = sum1  # type: ignore[index]
    if kept_from < 0:
        kept_from = at
    if kept_from > 0:
        del order[:kept_from]
    if only is not None and only_jobs:
        chains[only.id] = only_jobs
    if not local and total is state._local_cost:
        state._local_cost = {}
    out = state._out
    for slot_id, jobs in chains.items():
        last = out[-1] if out else None
        if type(last) is Execute and last.chain == slot_id:
            # The slot's first task, started just before in this pass (``_pump_local``, a
            # dispatch's claim): the jobs chained behind join its Execute, so the pool
            # writes the worker one pipe message for them all, not a lone job then the rest.
            if len(last.jobs) == 1 and type(jobs[0]) is JobBlock:
                _fold(last.jobs, jobs[0])
            last.jobs.extend(jobs)
        else:
            out.append(Execute(slot_id, jobs))


def start_task(state: Any, task: Task) -> None:
    """``ExecutorState._start``: ``task`` (claimed, its inputs here) starts under a slot of its
    own claim, its Job the slot's chain (``Execute``); its inputs taken (``_take_inputs``, in
    line for a task with none), or, when one is gone, it fails with input_lost (the owner retries
    it). What it sets on the task and its slot ``refill`` sets in line for the tasks it chains
    (change both). (A claimed task's start, a one-task call's: compiled, no bytecode.)"""
    if task.flat == () and not task.far:  # (``_take_inputs``' first case: no input at all)
        task.bytes_in = len(task.payload)
        inputs: list[Any] = []
    else:
        try:
            inputs = state._take_inputs(task)
        except LookupError as exc:
            state.tasks.pop((task.run_id, task.task_id, task.attempt), None)
            state._finish(task, failed(task, "input_lost", "InputLost", str(exc)), None)
            return
    gpus = task.gpus
    slot = Slot(next(state._slot_ids), task.cost, gpus, state.ledger.visible(gpus))
    state.slots[slot.id] = slot
    # (the task runs under the slot's claim)
    key = (task.run_id, task.task_id, task.attempt)
    task.running = True
    task.claimed = True
    task.slot = slot
    task.gpus = slot.gpus
    slot.keys[key] = None  # (its inputs were taken)
    job = new_job(  # (``Job(...)`` without its ``__init__`` call)
        key,
        task.payload,
        inputs,
        task.argument_inclusion,
        task.timeout,
        slot.devices,
        task.cost.get("memory"),
        f"run {task.run_id} task {task.task_id}",  # title
    )
    state._out.append(Execute(slot.id, [job]))


def _fold(started: list[Job | JobBlock], block: JobBlock) -> None:
    """A slot's first job (``started``' one, ``_start``'s) taken into the front of the block
    chained behind it when it is one of the block's kind (no inputs, no env, the block's
    inclusion, timeout, devices and memory): the pool then feeds and books them as one run, not a
    lone job before it (whose replies would then end one by one)."""
    job = started[0]
    if (
        type(job) is Job
        and not job.inputs
        and job.env is None
        and job.argument_inclusion == block.argument_inclusion
        and job.timeout == block.timeout
        and job.devices == block.devices
        and job.memory == block.memory
    ):
        block.keys.insert(0, job.key)
        block.payloads.insert(0, job.payload)
        block.titles.insert(0, job.title)
        started.clear()

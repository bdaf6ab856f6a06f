# cython: annotation_typing=False
# (the annotations are for mypy; executor_block.pxd beside it gives the compiled build its C types)
"""A read's block of KEPT replies ended (``executor_ends.Ends._ended`` of a ``Kept``): the block's
tasks looked up, the ones at its front that are not queued rows (a chain's first task is its
slot's ``Task`` when it was claimed as one: a dispatch's claim) ended one by one, the rest as a
block when that is the same as one by one.

Design note: ``_ended_each`` ends a task in ~90 bytecodes; the block's form (session 30) did it a
column at a time with ``map`` passes, each step a C call through the call protocol. Here the same
block is two C loops: one that checks (every task the next row of the first's slot, found there
by position, not looked up: ``Slot.rows``; of its run and owner, each end's mean duration under
the cap's fast bound, the values' sizes) and changes nothing, so a block that cannot go whole goes
one by one from the state it found; and one that ends (the tasks' entries deleted, the slot's
rows passed by its ``first``, the report's columns written). The store holds the values in between
(``ResultStore.put_all``, whose own loop is ``store/block.py``), or refuses the block whole.

Compiled (``setup.py EXECUTOR_COMPILED``) with executor_block.pxd's types, this file is also its
own pure-Python twin: ``tests/unit/test_replies_block.py`` holds both builds to the one-by-one
ends."""

from __future__ import annotations

from itertools import repeat
from typing import Any

from handoffd.daemon.executor_events import FLUSH, Soon
from handoffd.daemon.executor_records import (
    CHAIN_AHEAD,
    CHAIN_SECONDS,
    R_KEY,
    R_OWNER,
    R_PAYLOAD,
    R_RUN,
    R_SLOT,
    row_task,
)
from handoffd.daemon.report_batch import ReportBatch
from handoffd.store.store import StoreError
from handoffd.worker._records import Kept, outcome_of

MIN_DURATION = 1e-6  # seconds: a floor under the mean task duration that sizes chains
SOON_FLUSH = Soon(FLUSH)  # (``executor_ends``' own: the flush it finds again by identity)
# A row's fields (``executor_records.Row``) as this module's own names: C indices in the compiled
# build (the .pxd), so a field's read is the list's own, not an index object's look-up
_SLOT, _RUN, _OWNER, _PAYLOAD, _KEY = R_SLOT, R_RUN, R_OWNER, R_PAYLOAD, R_KEY


def ended_kept(ends: Any, block: Kept) -> None:
    """A read's block of KEPT replies ended, in order: the tasks at its front that are not
    queued rows one by one (a chain's first task is a ``Task`` when its slot started with one), the
    rest as a block when ``ends._ended_block`` can, else one by one. Only the front is looked up
    (up to the first row): the rest are found by position on that row's slot (``Slot.rows``)."""
    tasks = ends.tasks
    keys = block.keys
    count = len(keys)
    row = None
    lead = 0
    while lead < count:
        row = tasks.get(keys[lead])
        if type(row) is list:
            break
        lead += 1
    if lead:
        replies = block.rows()
        ends._ended_each(replies[:lead])
        if lead == count:
            return
        block = Kept(keys[lead:], block.values[lead:], block.durations[lead:], block.pid)
    if not ends._ended_block(block, row):
        ends._ended_each(block.rows())


def ended_block(ends: Any, block: Kept, first: Any) -> bool:
    """``_ended_each`` of the block's tasks (``first``: the first one's queued row, which
    ``tasks`` holds), when that is the same: the block's keys are its slot's rows from the next
    to end on (``Slot.rows``, ``Slot.first``: found by position, no look-up a task), each a row of
    one chain (one slot, run and owner), its mean duration short enough that the half chain is
    the cap's after every end, the store taking every value as ``put`` would without a refusal or
    a spill (``ResultStore.put_all``). Else False, nothing changed: the tasks end one by one."""
    keys = block.keys
    values = block.values
    durations = block.durations
    count = len(keys)
    seconds, most = CHAIN_SECONDS, CHAIN_AHEAD
    fast, half = seconds / (most + 1), (1 + most) // 2
    if type(first) is not list or fast <= MIN_DURATION:
        return False
    slot = first[_SLOT]
    if slot is None:
        return False
    rows = slot.rows
    start = slot.first
    if len(rows) - start < count or rows[start] is not first:
        return False
    run_id, owner, payload = first[_RUN], first[_OWNER], first[_PAYLOAD]
    mean = ends._mean_duration
    one_payload = True  # (one function's tasks: one payload, one bytes-in)
    biggest = 0
    ids: list[str] = []
    sizes: list[int] = []
    # Checked first, nothing changed: the slot's next row each (its key the reply's; a row
    # replaced by its ``Task`` has no slot: one by one), of the first's run and owner, each end's
    # mean in order (the floats ``_ended_each`` computes)
    at = 0
    while at < count:
        row = rows[start + at]
        key = keys[at]
        other = row[_KEY]
        if other is not key and other != key:
            return False
        if row[_SLOT] is not slot:
            return False
        other = row[_RUN]
        if other is not run_id and other != run_id:
            return False
        other = row[_OWNER]
        if other is not owner and other != owner:
            return False
        if one_payload:
            other = row[_PAYLOAD]
            if other is not payload and other != payload:
                one_payload = False
        duration = durations[at]
        mean += 0.1 * (duration - mean)
        if not mean < fast:
            return False
        size = len(values[at])
        if size > biggest:
            biggest = size
        sizes.append(size)
        ids.append(key[1])
        at += 1
    if not ends.store.put_all(run_id, ids, values, sizes):
        return False
    tasks = ends.tasks
    ended = ends._now + ends.wall_offset
    attempts: list[int] = []
    started: list[float] = []
    at = 0
    while at < count:
        key = keys[at]
        del tasks[key]
        attempts.append(key[2])
        started.append(ended - durations[at])
        at += 1
    sizes_in: list[int] = []  # (each task's bytes in, when they are not all one payload's)
    if not one_payload:
        sizes_in = [len(row[_PAYLOAD]) for row in rows[start : start + count]]
    # (off the slot's chain by position: its rows before ``first`` ended)
    start += count
    if start == len(rows):
        rows.clear()
        start = 0
    slot.first = start
    left = len(slot.keys) + len(rows) - start  # (``Slot.size``)
    ends._mean_duration = mean
    ends._half_chain = half
    fetched = ends._fetched
    if fetched:
        fetched.difference_update(zip(repeat(run_id), ids))
    if not left:  # the chain is over: nothing of it runs any more
        del ends.slots[slot.id]
        ends.ledger.release(slot.cost, slot.gpus)
        ends._changed = True
    # A refill is asked at the first end leaving the chain at half or less: before the flush
    # when that is the block's first end, after it otherwise (``_ended_each``'s order)
    refill = bool(ends.local) and left <= half and not ends._refill_scheduled
    if refill and left + count - 1 <= half:
        ends._schedule_refill()
        refill = False
    if not ends._flush_scheduled:
        ends._flush_scheduled = True
        ends._out.append(SOON_FLUSH)
    if refill:
        ends._schedule_refill()
    # (a column of one value extended from a list made by repetition: its items copied in C,
    # not taken one by one from an iterator)
    outbox = ends._outbox
    box = outbox.get((owner, run_id))
    if box is None:
        box = outbox[owner, run_id] = ReportBatch()
    box.task_ids.extend(ids)
    box.attempts.extend(attempts)
    box.sizes.extend(sizes)
    box.durations.extend(durations)
    box.pids.extend([block.pid] * count)
    box.started.extend(started)
    box.ended.extend([ended] * count)
    if one_payload:
        box.bytes_in.extend([len(payload)] * count)
    else:
        box.bytes_in.extend(sizes_in)
    limit = ends._inline_limit
    if biggest <= limit:
        box.values.extend(values)
    else:
        box.values.extend([v if len(v) <= limit else None for v in values])
    box.outputs.extend([""] * count)
    ends.counters["done"] += count
    return True


def ended_each(ends: Any, outcomes: Any) -> None:
    """``Ends._ended_each``: outcomes that are not ``Kept`` blocks (a task's ``Row`` or an
    ``Outcome``) ended one by one, in order. The common end (a value, a task of a chain) is done
    here in line: its store put, its report (its fields appended to its batch's columns) and its
    chain's bookkeeping, with one outbox look-up per run of the outcomes (``ends._end_one`` for
    any other: the same steps in the same order). The mean duration and the half chain it gives
    are kept in locals and written back before any call that reads them (``_end_one``) and at
    the end. (A one-task call's end, and the tasks at a block's front that are not queued rows,
    come this way: compiled, no bytecode a task.)"""
    tasks, store, fetched, local = ends.tasks, ends.store, ends._fetched, ends.local
    ended = ends._now + ends.wall_offset
    limit = ends._inline_limit
    mean, half = ends._mean_duration, ends._half_chain
    seconds, most = CHAIN_SECONDS, CHAIN_AHEAD
    # A mean under ``fast`` gives the chain cap's half chain (``_chain_target``): most tasks
    # of a busy node are that short
    fast, fast_half = seconds / (most + 1), (1 + most) // 2
    if fast <= MIN_DURATION:  # (the floor would then be what sizes the chain)
        fast = 0.0
    done = 0
    box_owner: Any = None
    box_run: Any = ""
    # The batch of the outcomes' (owner, run), its columns as locals (``report_batch``: the
    # report's columns appended to, no row or entry a task); set again when the batch changes
    outbox = ends._outbox
    ids: list[Any] = []
    tries: list[Any] = []
    sizes: list[Any] = []
    durations: list[Any] = []
    pids: list[Any] = []
    starts: list[Any] = []
    ends_at: list[Any] = []
    bytes_ins: list[Any] = []
    values: list[Any] = []
    outputs: list[Any] = []
    key: Any
    output: Any
    for outcome in outcomes:
        if type(outcome) is tuple:  # a KEPT reply's ``Row``: ok, a value, nothing printed
            key, value, duration, pid = outcome
            task = tasks.pop(key, None)
            if task is None:
                continue
            ok, output = True, ""
            # (the duration as it came goes into the report; its C double only into the sums,
            # the same IEEE operations as the .py's floats)
            seconds_taken = duration
            mean += 0.1 * (seconds_taken - mean)  # (its kind is "": it counts)
        else:
            key = outcome.key  # (not a tuple: an Outcome)
            task = tasks.pop(key, None)
            if task is None:
                continue
            kind, duration = outcome.kind, outcome.duration
            value, ok = outcome.value, outcome.ok
            pid, output = outcome.pid, outcome.output
            seconds_taken = duration
            if kind == "" or kind == "error":
                mean += 0.1 * (seconds_taken - mean)
        # The half chain of the mean (``_chain_target() // 2``; the same as before when the
        # mean did not change)
        if mean < fast:
            # (``seconds / mean`` is then above ``most + 1``, rounded or not: the chain is at
            # its cap, so the half chain is the cap's, with no division)
            half = fast_half
        else:
            per_task = mean if mean > MIN_DURATION else MIN_DURATION
            # (``_chain_target() // 2``, clamped by comparisons: no max/min call a task; the
            # quotient's ``int`` a Python one, as the .py's)
            ahead = int(seconds / per_task)
            if ahead > most:
                ahead = most
            elif ahead < 1:
                ahead = 1
            half = (1 + ahead) // 2
        # What the common end reads of the attempt (its ids are its key's): a queued task's row
        # (``executor_records.Row``) by index, a ``Task`` by name
        if type(task) is list:
            slot = task[_SLOT]
            run_id, owner, bytes_in = task[_RUN], task[_OWNER], len(task[_PAYLOAD])
            if slot is None or not ok or value is None:  # (off the common end)
                task = row_task(task)
        else:
            slot = task.slot
            run_id, owner, bytes_in = task.run_id, task.owner_address, task.bytes_in
        if ok and value is not None and slot is not None:
            try:
                store.put(run_id, key[1], value)
            except StoreError as exc:
                ends._mean_duration, ends._half_chain = mean, half
                if type(task) is list:
                    task = row_task(task)
                refused = ends._stored_not(task, outcome_of(outcome), exc)
                ends._end_one(task, refused, ended)
                continue
            if fetched:
                fetched.discard((run_id, key[1]))  # ours now, not a copy
            size = len(value)
            done += 1
            rows, first = slot.rows, slot.first
            if first < len(rows) and rows[first] is task:  # (its chain's next row)
                first += 1
                if first == len(rows):
                    rows.clear()
                    first = 0
                slot.first = first
            else:
                held = slot.keys
                if key in held:  # (``Slot.drop`` of a ``Task``'s key, in line)
                    del held[key]
                else:
                    slot.drop(key)
            left = len(slot.keys) + len(rows) - slot.first
            if not left:  # the chain is over: nothing of it runs any more
                del ends.slots[slot.id]
                ends.ledger.release(slot.cost, slot.gpus)
                ends._changed = True
            if local and left <= half and not ends._refill_scheduled:
                ends._schedule_refill()  # (not called again once a refill is due)
            if (
                owner is not box_owner
                and owner != box_owner
                or (run_id is not box_run and run_id != box_run)
            ):  # (no tuple a task)
                box_owner, box_run = owner, run_id
                box = outbox.get((owner, run_id))
                if box is None:
                    box = outbox[owner, run_id] = ReportBatch()
                ids, tries, sizes, durations = (
                    box.task_ids,
                    box.attempts,
                    box.sizes,
                    box.durations,
                )
                pids, starts, ends_at, bytes_ins = box.pids, box.started, box.ended, box.bytes_in
                values, outputs = box.values, box.outputs
            # (``done_report``'s row, a column each; bytes in: a row's is its payload's, it has
            # no inputs)
            ids.append(key[1])
            tries.append(key[2])
            sizes.append(size)
            durations.append(duration)
            pids.append(pid)
            starts.append(ended - seconds_taken)
            ends_at.append(ended)
            bytes_ins.append(bytes_in)
            values.append(value if size <= limit else None)
            outputs.append(output)
            if not ends._flush_scheduled:
                ends._flush_scheduled = True
                ends._out.append(SOON_FLUSH)
            continue
        ends._mean_duration, ends._half_chain = mean, half
        ends._end_one(task, outcome_of(outcome), ended)
    ends._mean_duration, ends._half_chain = mean, half
    if done:
        ends.counters["done"] += done

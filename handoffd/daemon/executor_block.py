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
)
from handoffd.daemon.report_batch import ReportBatch
from handoffd.worker._records import Kept

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

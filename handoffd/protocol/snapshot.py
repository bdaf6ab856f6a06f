"""Run snapshots and run errors on the wire.

A run's plain-data form (``RunState.snapshot``: dicts and lists, what the standby patches and the
takeover merges) travels as a ``RunSnapshot`` struct (frame 0 of ``ReplicateRun``), encoded and
checked by the same schemas as every message, so a standby never trusts an unchecked blob and the
bytes are pinned like a message's. Errors travel as ``ErrorInfo``: the same fields a client gets.
A task payload past ``store.chunks.FAR_BYTES`` travels empty (``far_payload``): the standbys pull
it apart, in chunks (``daemon.replication_payloads``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

import msgpack

from handoffd.freeing import free
from handoffd.protocol.columns import ColumnError
from handoffd.protocol.messages import ErrorInfo, RunSnapshot, SnapshotSpec, SnapshotTask
from handoffd.protocol.messages_observability import AttemptInfo
from handoffd.protocol.messages_snapshot import (
    SNAPSHOT_HEADS_SINCE,
    SNAPSHOT_TAILS_SINCE,
    SnapshotColumns,
)
from handoffd.protocol.messages_submit import TaskColumns
from handoffd.protocol.run_errors import (
    error_from_data,
    error_from_info,
    error_to_data,
    error_to_info,
    info_from_data,
    info_to_data,
)
from handoffd.protocol.schema import Invalid, Rows, struct_record
from handoffd.protocol.snapshot_columns import heads_form, spliced_columns, split_tails
from handoffd.spec import TaskSpec
from handoffd.store.chunks import FAR_BYTES

_packer = msgpack.Packer(use_bin_type=True, autoreset=True)


class SnapshotError(ValueError):
    """A snapshot frame that is not a valid ``RunSnapshot``."""


# -- task specs --------------------------------------------------------------------------------


def spec_to_data(s: TaskSpec | SnapshotSpec) -> dict[str, Any]:
    """A task spec, or its wire form (the same fields), as the run's plain data."""
    return {
        "id": s.id,
        "deps": list(s.deps),
        "cost": dict(s.cost),
        "payload": s.payload,
        "argument_inclusion": s.argument_inclusion,
        "node": s.node,
        "collocate_with": s.collocate_with,
        "inline": s.inline,
        "max_retries": s.max_retries,
        "timeout": s.timeout,
        "priority": s.priority,
    }


def spec_from_data(d: dict[str, Any]) -> TaskSpec:
    return TaskSpec(**{**d, "deps": tuple(d["deps"]), "cost": dict(d["cost"])})


# -- run snapshots -----------------------------------------------------------------------------


def _task_rows(run: Any) -> list[tuple[Any, ...]]:
    return [_task_row(task_id, r) for task_id, r in run.tasks.items()]


def _task_row(task_id: str, r: Any) -> tuple[Any, ...]:
    return (
        task_id,
        r.state,
        r.attempt,
        r.node,
        r.failures,
        r.losses,
        r.completions,
        r.size,
        r.value,
        tuple(sorted(r.locations)) if r.locations else (),
        r.delayed,
        r.last_error,
        (),
        list(r.attempts),
    )


#: A task row's fields after its id while the task is as its run built it (``TaskRecord``'s
#: initial values; tests/unit/test_intake_specs.py holds both builds' records to it).
_AS_BUILT: tuple[Any, ...] = ("PENDING", 0, None, 0, 0, 0, 0, None, (), False, ("", "", ""), (), [])
_BUILT_BYTES = _packer.pack(("", *_AS_BUILT))  # (the id "" packs to one byte, after the header)
_BUILT_HEAD, _BUILT_TAIL = _BUILT_BYTES[:1], _BUILT_BYTES[2:]
_NO_ERROR = _AS_BUILT[10]
#: The bytes after the id of a row as built but in one of these states: a run's tasks taken in
#: and not yet sent out (READY: most of a big run's when its standbys first get it, a few ms after
#: its intake), packed as their ids between bytes as ``_BUILT_TAIL`` (``_tasks_packed``).
_STILL_TAILS = {
    state: _packer.pack(("", state, *_AS_BUILT[1:]))[2:] for state in ("PENDING", "READY")
}


def _untouched_tasks(run: Any, chunk: int = 2048) -> bytes | None:
    """``_pack_rows(_task_rows(run))`` for a run as built (``run.untouched()``): every task row is
    its id between the bytes of a row as built (``_AS_BUILT``), so only the ids are packed (a row
    per task built and packed cost ~0.75 us a task of an upload's intake). None when its first or
    last task is not as built (then pack them all)."""
    if not _built_ends(run):
        return None
    ids = list(run.tasks)
    packer = msgpack.Packer(use_bin_type=True, autoreset=True)  # (a thread's own)
    pack = packer.pack
    head, tail = _BUILT_HEAD, _BUILT_TAIL
    between = tail + head
    parts = [packer.pack_array_header(len(ids))]
    for at in range(0, len(ids), chunk):  # (short C calls, as ``_pack_rows``)
        parts.append(
            head + between.join([pack(task_id) for task_id in ids[at : at + chunk]]) + tail
        )
    free(ids)
    return b"".join(parts)


def _built_ends(run: Any) -> bool:
    """Its first and last task as built (``_AS_BUILT``): ``run.untouched()`` says so of all, this
    guards the packing of them as built (``_untouched_tasks``, ``RunSnapshot.tasks_built``)."""
    tasks = run.tasks
    if not tasks:
        return False
    ids = iter(tasks)
    first = next(ids)
    last = next(reversed(tasks))
    return (
        _task_row(first, tasks[first])[1:] == _AS_BUILT
        and _task_row(last, tasks[last])[1:] == _AS_BUILT
    )


def _tasks_packed(run: Any, chunk: int = 2048) -> bytes:
    """``_pack_rows(_task_rows(run))`` (the same bytes) for a run that has moved on, read in a
    thread: a task still as built, maybe READY (most of a big run's when its standbys first get
    it), is packed as its id between the bytes of such a row, the others row by row. ``chunk``
    tasks per join: short C calls, as ``_pack_rows``."""
    packer = msgpack.Packer(use_bin_type=True, autoreset=True)  # (a thread's own)
    pack = packer.pack
    head, tails, no_error = _BUILT_HEAD, _STILL_TAILS, _NO_ERROR
    items = list(run.tasks.items())
    parts = [packer.pack_array_header(len(items))]
    for at in range(0, len(items), chunk):
        out: list[bytes] = []
        for task_id, r in items[at : at + chunk]:
            tail = tails.get(r.state)
            if (
                tail is not None
                and r.attempt == 0
                and r.node is None
                and r.failures == 0
                and r.losses == 0
                and r.completions == 0
                and r.size == 0
                and r.value is None
                and not r.locations
                and r.delayed is False
                and r.last_error == no_error
                and not r.attempts
            ):
                out += (head, pack(task_id), tail)
            else:
                out.append(pack(_task_row(task_id, r)))
        parts.append(b"".join(out))
    free(items)
    return b"".join(parts)


def far_payload(payload: Any) -> bool:
    """A task payload a snapshot leaves out (sent empty): its owner keeps it in its store under
    ``far_key("p", task)`` and names it in ``ReplicaPayloads``; each standby pulls it in chunks.
    A snapshot past a standby's ``max_frame_bytes`` was dropped there: the run was lost with its
    owner."""
    return len(payload) > FAR_BYTES


def far_specs(specs: Any) -> tuple[Any, ...]:
    """The specs whose payloads a snapshot leaves out (``far_payload``), in order: worked out
    where the run is built or packed (a thread), so the owner's loop never walks every spec for
    them (``OwnerPayloads.refs``: 200,000 specs held the new owner's loop 127 ms)."""
    # (in C calls: most runs; ``max`` compares the lengths in C, where ``int.__lt__`` called
    # through its wrapper per spec was a third of the walk)
    if max(map(len, map(_PAYLOAD, specs)), default=0) <= FAR_BYTES:
        return ()
    return tuple(s for s in specs if len(s.payload) > FAR_BYTES)


_PAYLOAD = attrgetter("payload")


def _spec_rows(specs: Any) -> list[tuple[Any, ...]]:
    return [
        (
            s.id,
            s.deps,
            s.cost,
            b"" if len(s.payload) > FAR_BYTES else s.payload,  # (``far_payload``)
            s.argument_inclusion,
            s.node,
            s.collocate_with,
            s.inline,
            s.max_retries,
            s.timeout,
            s.priority,
        )
        for s in specs
    ]


def pack_parts(
    run: Any,
    columns: SnapshotColumns | None = None,
    specs: bytes | None = None,
    tasks: bool = True,
) -> tuple[bytes, bytes | None]:
    """The two big fields of a just-built run's snapshot frame, packed: its specs (fixed for the
    run's life) and its tasks (valid while ``run.untouched()``). Built where the run is, off the
    event loop (``daemon.upload_intake``), and kept in ``run.prebuilt`` for ``encode_run``: for
    200,000 tasks they were ~0.6-2.3 s of the owner's loop per standby. With ``columns`` (the
    run's specs as the submission's columns: ``daemon.intake_columns.snapshot_columns``) the
    specs are packed as ``RunSnapshot.columns``: a few arrays in C calls, where a row per spec
    was built and packed (``Prebuilt.columns`` says which). ``specs``: that part already packed
    (``spliced_columns``), only the tasks packed here. ``tasks`` False: the tasks part left
    None while every task is as built, for standbys that read ``RunSnapshot.tasks_built`` (7:
    a spliced run's, whose specs only those read as they are): ``encode_run`` tells them so and
    packs the tasks for any other."""
    if specs is None and columns is not None:
        wire = _columns_record().to_wire(columns)
        if not (columns.tails or columns.tail_sizes):  # (a 6th version's columns, as they were)
            wire = wire[:_SIXTH_COLUMNS]
        specs = _packer_of().pack(wire)
    elif specs is None:
        rows = _spec_rows(run.specs)
        specs = _pack_rows(rows)
        free(rows)  # (a tuple per task, and a list in each task row: not freed at once on return)
    if run.untouched():
        if not tasks and _built_ends(run):
            return specs, None
        untouched = _untouched_tasks(run)
        if untouched is not None:
            return specs, untouched
    rows = _task_rows(run)
    packed = _pack_rows(rows)
    free(rows)
    return specs, packed


def _packer_of() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, autoreset=True)  # (a thread's own)


def _pack_rows(rows: list[Any], chunk: int = 2048) -> bytes:
    """``packb(rows)`` in short C calls: a thread holds the GIL for a whole ``pack``, and one of
    200,000 rows kept the loop waiting 100-300 ms. Each chunk of rows is packed as an array whose
    header is cut off (3 bytes: 16 <= ``chunk`` < 65536), after one header for them all."""
    packer = msgpack.Packer(use_bin_type=True, autoreset=True)  # (a thread's own)
    parts = [packer.pack_array_header(len(rows))]
    for at in range(0, len(rows), chunk):
        piece = rows[at : at + chunk]
        if len(piece) < 16:
            parts.extend(packer.pack(row) for row in piece)
        else:
            parts.append(packer.pack(piece)[3:])
    return b"".join(parts)


def encode_run(
    run: Any, *, chunked: bool = False, columns: int = 0, as_built: bool = False
) -> bytes:
    """The frame for a live ``scheduler.run.RunState`` as a standby gets it (no histories): what
    ``encode_run_data(run.snapshot(history=False))`` gives, without building that plain data.

    Packed as the run's own fields, without the per-field checks of ``encode_run_data``: an owner
    sends one per standby and run (the checks tripled the cost of a small run's snapshot), the
    fields are the scheduler's own, and the standby checks every one when it decodes. The specs
    and untouched tasks come from ``run.prebuilt`` when the run has them (``pack_parts``): the
    same bytes, spliced in (msgpack is a stream of values). ``chunked``: for a thread (the
    owner's ``daemon.replication`` packs a big run's snapshot off its loop): a packer of its own,
    and the specs and tasks packed in short C calls (``_pack_rows``), the same bytes.
    ``columns``: the standby reads ``RunSnapshot.columns`` (its range reaches
    ``SNAPSHOT_COLUMNS_SINCE``: ``messages_snapshot.reads_columns``, its version); the specs go as
    columns when its intake packed them so for a standby of that version (``Prebuilt.columns``:
    code heads need 6, the tails as one blob 7: to a standby of 6 they go cut apart,
    ``heads_form``), else as rows, which every standby reads. ``as_built``: the tasks spliced
    as built though the run moved on (the caller sends the moved ones after it: the first
    snapshot of a big run, ``daemon.replication``)."""
    o = run.options
    error = error_to_info(run.error)
    prebuilt = run.prebuilt
    packed = prebuilt.packed if prebuilt is not None else None
    packer = msgpack.Packer(use_bin_type=True, autoreset=True) if chunked else _packer
    as_columns = packed is not None and prebuilt.columns
    use_columns = as_columns and columns and columns >= prebuilt.columns
    # (tails as one blob: a standby of 6 still gets the columns, the tails cut apart for it)
    older = (
        as_columns
        and not use_columns
        and prebuilt.columns == SNAPSHOT_TAILS_SINCE
        and columns >= SNAPSHOT_HEADS_SINCE
    )
    specs: Any = None
    tasks: Any = None
    built = False  # (``RunSnapshot.tasks_built``: the tasks as built, none packed)
    if packed is not None:
        if older:
            specs, use_columns = heads_form(packed[0]), True
        elif use_columns or not as_columns:
            specs = packed[0]
        if as_built or run.untouched():
            tasks = packed[1]
            if tasks is None:  # (``pack_parts``' ``tasks``: as built, left unpacked)
                if columns >= SNAPSHOT_TAILS_SINCE:
                    built, tasks = True, _NO_TASKS
                elif not chunked:
                    tasks = _untouched_tasks(run)
    if specs is None and chunked:
        specs = _pack_rows(_spec_rows(run.specs))
    if tasks is None and chunked:
        tasks = _tasks_packed(run)
    row: tuple[Any, ...] = (
        run.run_id,
        run.seq,
        run.term,
        run.state,
        _error_record().to_wire(error) if error is not None else None,
        run.released,
        tuple(sorted(run.holders)),
        o.max_retries,
        o.timeout,
        o.policy,
        o.outputs,
        () if use_columns else _SPLICED if specs is not None else _spec_rows(run.specs),
        run.group_node,
        _SPLICED if tasks is not None else _task_rows(run),
        o.packages,
        run.submitted,
        run.finished,
    )
    if use_columns:
        row += (_SPLICED,)  # (``RunSnapshot.columns``: a 5th version's trailing field)
    if built:
        row += (None, True)[len(row) - _COLUMNS_AT :]  # (``tasks_built``: a 7th version's)
    if specs is None and tasks is None:
        return packer.pack(row)  # type: ignore[no-any-return]
    parts = [packer.pack_array_header(len(row))]
    for at, value in enumerate(row):
        if value is _SPLICED:
            parts.append(tasks if at == _TASKS_AT else specs)
        else:
            parts.append(packer.pack(value))
    return b"".join(parts)


_SPLICED = object()  # a field of encode_run's row taken from ``run.prebuilt``
_SIXTH_COLUMNS = [f.name for f in fields(SnapshotColumns)].index("tails")  # (6's fields: before)
_SPECS_AT = 11  # the specs' index in a RunSnapshot row
_TASKS_AT = 13  # the tasks' index
_COLUMNS_AT = 17  # ``columns``' index (``tasks_built`` after it)
_NO_TASKS = msgpack.packb(())


def encode_run_data(data: dict[str, Any]) -> bytes:
    """The frame for a run's plain data (``RunState.snapshot``); TypeError names a bad field."""
    o = data["options"]
    error = data["error"]
    outputs = o["outputs"]
    specs = Rows(
        [
            (
                s["id"],
                tuple(s["deps"]),
                s["cost"],
                s["payload"],
                s["argument_inclusion"],
                s["node"],
                s["collocate_with"],
                s["inline"],
                s["max_retries"],
                s["timeout"],
                s["priority"],
            )
            for s in data["specs"]
        ]
    )
    tasks = Rows(
        [
            (
                task_id,
                t["state"],
                t["attempt"],
                t["node"],
                t["failures"],
                t["losses"],
                t["completions"],
                t["size"],
                t["value"],
                tuple(t["locations"]),
                t["delayed"],
                tuple(t["last_error"]),
                tuple([tuple(h) for h in t["history"]]),
                tuple([_attempt_info(a) for a in t.get("attempts", ())]),
            )
            for task_id, t in data["tasks"].items()
        ]
    )
    row = (
        data["run_id"],
        data["seq"],
        data["term"],
        data["state"],
        info_from_data(error) if error is not None else None,
        data["released"],
        tuple(data["holders"]),
        o["max_retries"],
        o["timeout"],
        o["policy"],
        tuple(outputs) if outputs is not None else None,
        specs,
        data["group_node"],
        tasks,
        tuple(o.get("packages", ())),
        float(data.get("submitted", 0.0)),
        float(data.get("finished", 0.0)),
        None,  # (the specs as rows: every standby reads them)
        False,  # (the tasks as rows)
    )
    return _packer.pack(_record().row_to_wire(row)[:_COLUMNS_AT])  # type: ignore[no-any-return]


def decode_run(raw: bytes | memoryview) -> dict[str, Any]:
    """A snapshot frame back as plain data; raises ``SnapshotError`` saying what is wrong."""
    try:
        values = _unpack(raw)
    except Exception as exc:
        raise SnapshotError(f"run snapshot is not msgpack: {exc}") from None
    record = _record()
    if type(values) is not tuple:
        raise SnapshotError("run snapshot is not an array of RunSnapshot fields")
    try:
        if len(values) == record.count:
            snap: RunSnapshot = record.from_values(values)
        else:
            snap = record.from_other(values)
    except Invalid as exc:
        raise SnapshotError(f"invalid run snapshot: {exc}") from None
    specs = (
        [spec_to_data(s) for s in snap.specs]
        if snap.columns is None
        else _column_specs(snap.columns, len(snap.specs))
    )
    if snap.tasks_built and snap.tasks:
        raise SnapshotError(f"invalid run snapshot: {len(snap.tasks)} task rows, all as built")
    data = {
        "run_id": snap.run_id,
        "seq": snap.seq,
        "term": snap.term,
        "state": snap.state,
        "error": info_to_data(snap.error),
        "released": snap.released,
        "holders": list(snap.holders),
        "options": {
            "max_retries": snap.max_retries,
            "timeout": snap.timeout,
            "policy": snap.policy,
            "outputs": list(snap.outputs) if snap.outputs is not None else None,
            "packages": list(snap.packages),
        },
        "specs": specs,
        "group_node": dict(snap.group_node),
        "tasks": _built_data(specs) if snap.tasks_built else _task_rows_data(snap.tasks),
        "submitted": snap.submitted,
        "finished": snap.finished,
    }
    # The rows unpacked and their structs are garbage now. Dropped with their tuples, each is
    # freed in one C call holding the GIL (60-100 ms for 200,000 tasks in a takeover's thread,
    # the event loop waiting): held in lists of our own first, then freed a piece at a time.
    rows = [values[at] for at in sorted(_ROW_FIELDS) if at < len(values)]
    held = [list(v) for v in (*rows, snap.specs, snap.tasks)]
    del rows
    del values, snap
    free_in_pieces(held)
    return data


# Items freed at a time by ``free_in_pieces``: well under a millisecond of deallocation.
FREE_PIECE = 256


def free_in_pieces(lists: list[list[Any]]) -> None:
    """Empty ``lists`` (ours: no one else sees them), ``FREE_PIECE`` items at a time, so a thread
    freeing a big structure lets others take the GIL between pieces (the last reference to a big
    tuple or dict frees all its items in one C call that never lets it go)."""
    while lists:
        items = lists.pop()
        while items:
            del items[-FREE_PIECE:]


def _unpack(raw: bytes | memoryview) -> Any:
    """``msgpack.unpackb(raw, use_list=False, ...)`` in short C calls: a takeover decodes a replica
    in a thread (``daemon.replication_rebuild``), and one ``unpackb`` of a 200,000-task snapshot
    holds the GIL, so the event loop, for all of it. A snapshot's big fields (specs, tasks) are
    arrays of rows, unpacked a row at a time; anything else is unpacked whole as before."""
    unpacker = msgpack.Unpacker(
        raw=False,
        use_list=False,
        strict_map_key=True,
        max_ext_len=0,
        max_buffer_size=max(len(raw), 1),
    )
    unpacker.feed(raw)
    try:
        count = unpacker.read_array_header()
    except ValueError:  # not an array: unpacked whole, refused by the caller's check
        return msgpack.unpackb(raw, raw=False, use_list=False, strict_map_key=True, max_ext_len=0)
    fields: list[Any] = []
    for at in range(count):
        if at in _ROW_FIELDS:  # (a snapshot whose specs or tasks are no array is refused here)
            rows = unpacker.read_array_header()
            fields.append(tuple([unpacker.unpack() for _ in range(rows)]))
        else:
            fields.append(unpacker.unpack())
    try:
        unpacker.unpack()
    except msgpack.OutOfData:
        return tuple(fields)
    raise ValueError("extra data after the snapshot")


_ROW_FIELDS = frozenset((_SPECS_AT, _TASKS_AT))  # a RunSnapshot's specs and tasks


def _column_specs(c: SnapshotColumns, rows: int) -> list[dict[str, Any]]:
    """``RunSnapshot.columns`` as the run's spec dicts (``spec_to_data``'s, in order); a
    ``SnapshotError`` saying which columns disagree (lengths, an index out of range), or that the
    snapshot has spec rows as well."""
    if rows:
        raise SnapshotError(f"invalid run snapshot: {rows} spec rows besides the spec columns")
    try:
        # The submission's own checks of the same arrays (``SubmitColumns``' names).
        tasks = TaskColumns(c)  # type: ignore[arg-type]
    except ColumnError as exc:
        raise SnapshotError(f"invalid run snapshot columns: {exc}") from None
    payloads: Sequence[bytes] = c.payloads
    if c.tails or c.tail_sizes:  # (protocol 7: the tails as one blob)
        if payloads:
            raise SnapshotError("invalid run snapshot columns: payloads besides their tails")
        try:
            payloads = split_tails(c.tails, c.tail_sizes, len(c.ids), "SnapshotColumns")
        except ColumnError as exc:
            raise SnapshotError(f"invalid run snapshot columns: {exc}") from None
    if len(payloads) != len(c.ids):
        raise SnapshotError(
            f"invalid run snapshot columns: {len(payloads)} payloads for {len(c.ids)} specs"
        )
    costs, inclusions = c.costs, c.inclusions
    return [
        {
            "id": fid,
            "deps": list(deps),
            "cost": dict(costs[cost_at]),
            "payload": payload,
            "argument_inclusion": inclusions[kind_at],
            "node": None,
            "collocate_with": None,
            "inline": False,
            "max_retries": None,
            "timeout": None,
            "priority": priority,
        }
        for fid, deps, cost_at, kind_at, priority, payload in zip(
            c.ids,
            tasks.deps,
            tasks.cost_of,
            tasks.inclusion,
            tasks.priorities,
            tasks.whole(payloads),  # (each joined to its code head, if it came cut)
            strict=True,
        )
    ]


def _task_rows_data(tasks: Sequence[SnapshotTask]) -> dict[str, dict[str, Any]]:
    return {t.task_id: _task_data(t) for t in tasks}


def _built_data(specs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``RunSnapshot.tasks_built``: each spec's task as built, as ``_task_data`` reads the row
    of one (``_AS_BUILT``), a dict of its own each."""
    (state, attempt, node, failures, losses, completions, size, value, _, delayed, error, _, _) = (
        _AS_BUILT
    )
    return {
        s["id"]: {
            "state": state,
            "attempt": attempt,
            "node": node,
            "failures": failures,
            "losses": losses,
            "completions": completions,
            "size": size,
            "value": value,
            "locations": [],
            "delayed": delayed,
            "last_error": list(error),
            "history": [],
            "attempts": [],
        }
        for s in specs
    }


def _task_data(t: SnapshotTask) -> dict[str, Any]:
    return {
        "state": t.state,
        "attempt": t.attempt,
        "node": t.node,
        "failures": t.failures,
        "losses": t.losses,
        "completions": t.completions,
        "size": t.size,
        "value": t.value,
        "locations": list(t.locations),
        "delayed": t.delayed,
        "last_error": list(t.last_error),
        "history": [list(h) for h in t.history],
        "attempts": [attempt_row(a) for a in t.attempts],
    }


def attempt_row(a: Any) -> list[Any]:
    """An ``AttemptInfo`` as its row of fields (``scheduler.history.row_of``)."""
    fields = _ROW_GETTERS.get(type(a))
    if fields is None:  # one getter per class: a standby puts a row per task delta it keeps
        names = list(a.__dataclass_fields__)
        get = attrgetter(*names)  # (one name: the value itself, not a 1-tuple)
        fields = _ROW_GETTERS[type(a)] = get if len(names) > 1 else lambda x: (get(x),)
    return list(fields(a))


_ROW_GETTERS: dict[type, Callable[[Any], tuple[Any, ...]]] = {}


def _attempt_info(row: Any) -> AttemptInfo:
    return AttemptInfo(*row)


def _record() -> Any:
    return struct_record(RunSnapshot)


def _columns_record() -> Any:
    return struct_record(SnapshotColumns)


def _error_record() -> Any:
    return struct_record(ErrorInfo)


__all__ = [
    "SnapshotError",
    "decode_run",
    "free_in_pieces",
    "encode_run",
    "heads_form",
    "encode_run_data",
    "error_from_data",
    "error_from_info",
    "error_to_data",
    "error_to_info",
    "far_payload",
    "far_specs",
    "info_to_data",
    "pack_parts",
    "spec_from_data",
    "spec_to_data",
    "spliced_columns",
]

"""The scheduler's ``Dispatch`` instruction as the wire's ``DispatchColumns``: pure translation,
used by the owner's shell. A dispatch to our own node is never encoded: ``dispatch_here`` builds the
``columns.DispatchTable`` a received message is read into (``HereTable``), or, for inline inputs
or an owner with no executor beside it, the per-task ``DispatchTasks`` (``dispatch_tasks``). One column per field for all the message's tasks (issue 13, item 5):
the owner packs numbers into arrays instead of building a record per task and per input.
Payloads and values travel as frames, each object once per message however many items refer to
it; inline inputs (functions run inside their consumer's job) are flattened depth-first, each
naming its parent's index."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from handoffd.arguments import SERIALIZE_SUFFIX
from handoffd.protocol import messages as m
from handoffd.protocol.columns import INPUT_KINDS, DispatchTable, join_frames, pack
from handoffd.protocol.messages_chunks import FarFrame
from handoffd.protocol.messages_columns import DispatchColumns
from handoffd.protocol.registry import maker
from handoffd.scheduler import events as ev
from handoffd.scheduler.outbox import Placed, placed_of
from handoffd.store.chunks import FAR_BYTES, far_key
from handoffd.store.store import ResultStore, StoreError
from handoffd.values import one_int_run

log = logging.getLogger("handoffd.owner")

_NAN = math.nan
_NOTHING: object = object()  # (no task's payload, cost or inclusion is this)

# One a dispatch to another node: its 26 fields through their slots' descriptors, not the frozen
# __init__'s object.__setattr__ each (registry.maker; the same object).
_dispatch_columns = maker(DispatchColumns)
_NO_INPUTS = (b"",) * 6


class _Inputs:
    """The input columns of one message, filled depth-first."""

    __slots__ = (
        "kinds",
        "task_ids",
        "frames",
        "inclusion",
        "parents",
        "holder_counts",
        "holders",
        "addresses",
        "address_of",
        "inclusion_of",
        "add_frame",
        "variadic",
    )

    def __init__(
        self,
        address_of: Callable[[str], str | None],
        inclusion_of: Callable[[str], int],
        add_frame: Callable[[bytes, str, str], int],
    ) -> None:
        self.kinds: list[int] = []
        self.task_ids: list[str] = []
        self.frames: list[int] = []
        self.inclusion: list[int] = []
        self.parents: list[int] = []
        self.holder_counts: list[int] = []
        self.holders: list[int] = []
        self.addresses: dict[str, int] = {}  # node name -> index in the address table
        self.address_of = address_of
        self.inclusion_of = inclusion_of
        self.add_frame = add_frame
        self.variadic = -1  # the index of "variadic" in the inclusion table, once asked for

    def add(self, refs: Iterable[ev.InputRef], parent: int, base: int) -> None:
        """Append ``refs`` (of one task whose first input is at ``base``) and their nested ones."""
        # (the columns and helpers bound once per task, not looked up per input: a layered DAG's
        # task has 3 inputs)
        kinds = self.kinds
        task_ids = self.task_ids
        frames = self.frames
        inclusion = self.inclusion
        parents = self.parents
        holder_counts = self.holder_counts
        holders = self.holders
        addresses = self.addresses
        add_frame = self.add_frame
        variadic = self.variadic
        for ref in refs:
            task_ids.append(ref.task_id)
            parents.append(parent)
            if isinstance(ref, ev.InlineRef):
                index = len(kinds) - base
                # A hidden serialize function (handoffd.arguments), kind 2: the consumer's node
                # decides whether it runs, and where (daemon.executor_hooks).
                kinds.append(2 if ref.task_id.endswith(SERIALIZE_SUFFIX) else 1)
                frames.append(add_frame(ref.payload, "p", ref.task_id))
                inclusion.append(self.inclusion_of(ref.argument_inclusion))
                holder_counts.append(0)
                self.add(ref.inputs, index, base)
                continue
            kinds.append(0)
            value = ref.value
            frames.append(add_frame(value, "v", ref.task_id) if value is not None else -1)
            if variadic < 0:
                variadic = self.variadic = self.inclusion_of("variadic")
            inclusion.append(variadic)
            count = 0
            for name in ref.locations:
                at = addresses.get(name)
                if at is None:
                    # a holder without an address is left out: the executor fetches from the others
                    if not self.address_of(name):
                        continue
                    at = addresses[name] = len(addresses)
                holders.append(at)
                count += 1
            holder_counts.append(count)


def dispatch_message(
    ins: ev.Dispatch,
    owner_address: str,
    address_of: Callable[[str], str | None],
    packages: tuple[str, ...] = (),
    far: Callable[[str, bytes], bool] | None = None,
    calls: bool = False,
) -> tuple[DispatchColumns, list[bytes]]:
    """(the message, the frames to send: small ones packed, ``columns.join_frames``);
    ``address_of`` maps the nodes holding an input to addresses. ``far(key, data)``: keep a
    frame past ``FAR_BYTES`` under ``key`` on this node (True if kept): it goes by reference
    (``FarFrame``, pulled in chunks by the executing node) instead of inline. ``calls``: the
    node reads calls (``messages_columns.reads_calls``): when every task has a payload of its
    own and they are one-int calls of one start (``values.one_int_run``), the start goes once
    and the ints as a column (``call_start``, ``call_ints``) instead of the payloads."""
    frames: list[bytes] = []
    frame_of: dict[int, int] = {}
    inclusions: dict[str, int] = {}
    far_frames: list[FarFrame] = []

    def add_frame(data: bytes, kind: str = "p", task_id: str = "") -> int:
        index = frame_of.get(id(data))
        if index is None:
            index = frame_of[id(data)] = len(frames)
            if far is not None and len(data) > FAR_BYTES:
                key = far_key(kind, task_id)
                if far(key, data):
                    far_frames.append(FarFrame(index, key, len(data), owner_address))
                    data = b""
            frames.append(data)
        return index

    def inclusion_of(text: str) -> int:
        index = inclusions.get(text)
        if index is None:
            index = inclusions[text] = len(inclusions)
        return index

    placed = columns_of(ins)
    if calls and placed.inputs is None:
        built = _calls_message(ins, placed, owner_address, packages)
        if built is not None:
            return built
    flat = placed.flat
    n = len(flat) >> 2
    inputs = _Inputs(address_of, inclusion_of, add_frame)
    # Inputs' frames and inclusions are numbered first (the executor numbers frames so:
    # dispatch_tasks), the payloads' after, a group at a time: the scheduler's columns are read
    # whole, no loop a task but over the inputs of tasks that have some.
    if placed.inputs is None:  # (no task has an input: W1's)
        counts = [0] * n
    else:
        counts = []
        for refs in placed.inputs:
            if refs:
                base = len(inputs.kinds)
                inputs.add(refs, -1, base)
                counts.append(len(inputs.kinds) - base)
            else:
                counts.append(0)
    runs = placed.runs()
    kind_set: set[str] = set()
    seen_costs: set[int] = set()  # (groups share their cost dicts)
    for run in runs:
        if id(run[2]) not in seen_costs:
            seen_costs.add(id(run[2]))
            kind_set.update(run[2])
    kinds = sorted(kind_set)
    costs: list[float] = []
    timeouts: list[float] = []
    payloads: list[int] = []
    inclusion: list[int] = []
    task_ids = flat[0::4]
    start = 0
    first_payload = len(frames)  # (the payloads' frames follow the inputs')
    for size, data, cost, text, timeout in runs:
        if len(kinds) == 1:  # the common case: one kind (cpu)
            costs += [float(cost.get(kinds[0], 0.0))] * size
        else:
            costs += [float(cost.get(k, 0.0)) for k in kinds] * size
        timeouts += [_NAN if timeout is None else timeout] * size
        at = frame_of.get(id(data))
        if at is None:
            at = add_frame(data, "p", task_ids[start])
        payloads += [at] * size
        inclusion += [inclusion_of(text)] * size
        start += size
    address_table = tuple(address_of(name) or "" for name in inputs.addresses)
    call_start = call_ints = b""
    # (a payload a task, each new, in task order: W1's one-int calls are each their own object;
    # a group of tasks sharing a payload already sends it once)
    if calls and n > 1 and len(frames) - first_payload == n:
        headed = one_int_run(frames[first_payload:])
        if headed is not None:
            call_start, ints = headed
            call_ints = bytes(ints)
            del frames[first_payload:]
    frame_sizes, sent = join_frames(frames)  # small payloads and values: one frame
    if inputs.kinds:
        input_columns: tuple[bytes, ...] = (
            pack("B", inputs.kinds),
            pack("i", inputs.frames),
            pack("B", inputs.inclusion),
            pack("i", inputs.parents),
            pack("i", inputs.holder_counts),
            pack("i", inputs.holders),
        )
    else:  # (no task has an input, W1's: six empty columns, not six pack calls)
        input_columns = _NO_INPUTS
    in_kinds, in_frames, in_inclusion, in_parents, in_counts, in_holders = input_columns
    msg = _dispatch_columns(
        ins.run_id,
        owner_address,
        tuple(task_ids),
        pack("q", flat[1::4]),
        b"" if call_start else pack("i", payloads),
        tuple(kinds),
        pack("d", costs),
        tuple(inclusions),
        pack("B", inclusion),
        pack("d", timeouts),
        pack("q", flat[2::4]),
        pack("d", flat[3::4]),
        pack("i", counts),
        in_kinds,
        tuple(inputs.task_ids),
        in_frames,
        in_inclusion,
        in_parents,
        in_counts,
        address_table,
        in_holders,
        packages,
        frame_sizes,
        tuple(far_frames),
        call_start,
        call_ints,
    )
    return msg, sent


def _calls_message(
    ins: ev.Dispatch, placed: Placed, owner_address: str, packages: tuple[str, ...]
) -> tuple[DispatchColumns, list[bytes]] | None:
    """``dispatch_message(..., calls=True)``'s message for tasks without inputs that each have a
    payload of their own (a group each: W1's ``f(i)``), all of one cost, inclusion and timeout
    (the same objects) and one-int calls of one start; None for any other. Its columns are
    made whole, not a group at a time: the general loop's per-group steps were most of a W1
    dispatch's build, and here each is the same for every task."""
    groups = placed.groups
    flat = placed.flat
    n = len(flat) >> 2
    if n < 2 or len(groups) != n:
        return None
    # (the groups' fields as columns in one C pass; compared by identity first, in C: the
    # scheduler's groups share the run's objects)
    _, payloads, costs, texts, timeouts = zip(*groups, strict=True)
    cost, text, timeout = costs[0], texts[0], timeouts[0]
    if costs.count(cost) != n or texts.count(text) != n or timeouts.count(timeout) != n:
        return None
    headed = one_int_run(list(payloads))
    if headed is None:
        return None
    start, ints = headed
    kinds = sorted(cost)
    msg = _dispatch_columns(
        ins.run_id,
        owner_address,
        tuple(flat[0::4]),
        _column("q", flat[1::4]),
        b"",
        tuple(kinds),
        pack("d", [float(cost.get(k, 0.0)) for k in kinds]) * n,
        (text,),
        bytes(n),  # (every task's inclusion: index 0)
        pack("d", [_NAN if timeout is None else timeout]) * n,
        _column("q", flat[2::4]),
        pack("d", flat[3::4]),
        bytes(4 * n),  # (no task has an input: n zero counts, and no input columns)
        b"",
        (),
        b"",
        b"",
        b"",
        b"",
        (),
        b"",
        packages,
        b"",
        (),
        start,
        bytes(ints),
    )
    return msg, []


def _column(code: str, values: list[Any]) -> bytes:
    """``pack(code, values)`` of ints (``code`` q or i), the first value's bytes repeated when
    every value equals it (a stream's attempts and priorities, as a rule): one compare a value,
    not a conversion. (Not for floats: -0.0 equals 0.0 but packs otherwise.)"""
    if values.count(values[0]) == len(values):
        return pack(code, values[:1]) * len(values)
    return pack(code, values)


def dispatch_tasks(
    ins: ev.Dispatch,
    owner_address: str,
    address_of: Callable[[str], str | None],
    packages: tuple[str, ...] = (),
) -> tuple[m.DispatchTasks, list[bytes]]:
    """What ``columns.dispatch_items`` reads back from ``dispatch_message(...)`` (and its frames
    as ``columns.split_frames`` gives them), built directly: for our own node's executor, where
    packing columns only to read them back at once was most of the dispatch's cost."""
    frames: list[bytes] = []
    frame_of: dict[int, int] = {}

    def add_frame(data: bytes) -> int:
        index = frame_of.get(id(data))
        if index is None:
            index = frame_of[id(data)] = len(frames)
            frames.append(data)
        return index

    def flatten(refs: Iterable[ev.InputRef], parent: int, out: list[m.InputRef]) -> None:
        for ref in refs:
            index = len(out)
            if isinstance(ref, ev.InlineRef):
                kind = INPUT_KINDS[2 if ref.task_id.endswith(SERIALIZE_SUFFIX) else 1]
                frame = add_frame(ref.payload)
                out.append(m.InputRef(kind, ref.task_id, (), frame, ref.argument_inclusion, parent))
                flatten(ref.inputs, index, out)
                continue
            frame = add_frame(ref.value) if ref.value is not None else -1
            held = tuple(a for a in (address_of(name) for name in ref.locations) if a)
            out.append(m.InputRef(INPUT_KINDS[0], ref.task_id, held, frame, "variadic", parent))

    inputs: list[list[m.InputRef]] = []
    for item in ins.items:
        inputs.append([])
        if item.inputs:
            flatten(item.inputs, -1, inputs[-1])
    items = [  # (payloads after every input: the frames in dispatch_message's order)
        m.DispatchItem(
            item.task_id,
            item.attempt,
            {kind: float(q) for kind, q in item.cost.items() if q},
            item.argument_inclusion,
            None if item.timeout is None else float(item.timeout),
            add_frame(item.payload),
            tuple(refs),
            item.priority,
            float(item.rank),
        )
        for item, refs in zip(ins.items, inputs, strict=True)
    ]
    return m.DispatchTasks(ins.run_id, owner_address, tuple(items), packages), frames


class HereTable(DispatchTable):
    """A dispatch to our own node's executor as the table a received ``DispatchColumns`` is read
    into, built from the scheduler's items with nothing packed and no ``DispatchItem`` or
    ``InputRef`` per task, so both take one intake (``executor_intake._accept_table``). Only
    for plain inputs (``_here_table``); the columns that intake does not read (kinds, parents,
    holders) are not set. Frames are numbered as ``dispatch_tasks`` numbers them, so ``tasks()``
    (the per-item path: a draining executor) is that message with these frames."""

    __slots__ = ("_ins", "_refs", "_address_of")

    _ins: ev.Dispatch
    _refs: list[ev.ValueRef]
    _address_of: Callable[[str], str | None]

    def locations(self, j: int) -> tuple[str, ...]:
        """The addresses of input ``j``'s holders, looked up only for a value fetched (the
        columns resolve every input's at once)."""
        address_of = self._address_of
        return tuple(a for a in map(address_of, self._refs[j].locations) if a)

    def tasks(self) -> m.DispatchTasks:
        return dispatch_tasks(self._ins, self.owner_address, self._address_of, self.packages)[0]


def _here_table(
    ins: ev.Dispatch,
    owner_address: str,
    address_of: Callable[[str], str | None],
    packages: tuple[str, ...],
) -> tuple[HereTable, list[bytes]] | None:
    """``ins`` as a ``HereTable`` and its frames; None if an input is inline (a tree)."""
    frames: list[bytes] = []
    frame_of: dict[int, int] = {}
    ids: list[str] = []
    numbers: list[int] = []
    refs: list[ev.ValueRef] = []
    placed = columns_of(ins)
    flat = placed.flat
    n = len(flat) >> 2
    # (every input's value first: dispatch_tasks's frame order; no pass when none has an input,
    # as every task of a no-op stream)
    if placed.inputs is None:
        counts = [0] * n
    else:
        counts = list(map(len, placed.inputs))
        for inputs in placed.inputs:
            for ref in inputs:
                if isinstance(ref, ev.InlineRef):
                    return None
                ids.append(ref.task_id)
                value = ref.value
                if value is None:
                    numbers.append(-1)
                    continue
                at = frame_of.get(id(value))
                if at is None:
                    at = frame_of[id(value)] = len(frames)
                    frames.append(value)
                numbers.append(at)
            refs.extend(inputs)  # type: ignore[arg-type]  # (no InlineRef: checked above)
    payloads: list[int] = []
    # a cost dict per distinct dict of the scheduler's (its tasks share them), as the table's
    # are shared per distinct row: the intake copies what it keeps
    cost_of: dict[int, dict[str, float]] = {}
    costs: list[dict[str, float]] = []
    inclusions: dict[str, int] = {}
    inclusion: list[int] = []
    timeouts: list[float] = []
    # (the payloads' frames after every input's, in task order, a group of tasks of one
    # function at a time: the scheduler's columns are read whole, the group's objects once)
    for size, data, cost, text, timeout in placed.runs():
        at = frame_of.get(id(data))
        if at is None:
            at = frame_of[id(data)] = len(frames)
            frames.append(data)
        payloads += [at] * size
        found = cost_of.get(id(cost))
        if found is None:
            found = cost_of[id(cost)] = {k: float(q) for k, q in cost.items() if q}
        costs += [found] * size
        at = inclusions.get(text, -1)
        if at < 0:
            at = inclusions[text] = len(inclusions)
        inclusion += [at] * size
        timeouts += [_NAN if timeout is None else float(timeout)] * size
    t = HereTable.__new__(HereTable)
    t.run_id, t.owner_address, t.packages, t.far = ins.run_id, owner_address, packages, ()
    t.task_ids = tuple(flat[0::4])
    t.attempts = flat[1::4]
    t.payloads, t.costs, t.inclusion, t.inclusions = payloads, costs, inclusion, tuple(inclusions)
    t.timeouts = timeouts
    t.priorities = flat[2::4]
    t.ranks = flat[3::4]
    t.counts, t.input_task_ids, t.frames = counts, tuple(ids), numbers
    t.plain, t._held = True, None
    t._ins, t._refs, t._address_of = ins, refs, address_of
    return t, frames


def dispatch_here(
    ins: ev.Dispatch,
    owner_address: str,
    address_of: Callable[[str], str | None],
    packages: tuple[str, ...] = (),
) -> tuple[m.DispatchTasks | DispatchTable, list[bytes]]:
    """What our own node's executor takes for ``ins`` (handed over in this process): a
    ``HereTable`` when every input is a value, else ``dispatch_tasks``'s message."""
    built = _here_table(ins, owner_address, address_of, packages)
    if built is not None:
        return built
    return dispatch_tasks(ins, owner_address, address_of, packages)


def columns_of(ins: ev.Dispatch) -> Placed:
    """``ins``'s tasks as the scheduler's columns: its ``items`` as they are when the scheduler
    built them (``outbox.Placed``), else made from its ``DispatchedTask`` items (a dispatch built
    elsewhere, as tests and tools make them)."""
    items = ins.items
    return items if type(items) is Placed else placed_of(items)


def far_keeper(store: ResultStore, run_id: str) -> Callable[[str, bytes], bool]:
    """Keeps a big dispatch frame of ``run_id`` in our ``store`` (``dispatch_message``'s
    ``far``); False (sent inline, so refused by ``oversize``) past our value limit."""

    def keep(key: str, data: bytes) -> bool:
        if store.has(run_id, key):
            return True
        try:
            store.put(run_id, key, data)
        except StoreError as exc:
            log.warning("run %s: %s", run_id, exc, extra={"run": run_id})
            return False
        return True

    return keep

"""Result store of one node: values kept in memory, spilled to disk past a byte budget.

Values are opaque bytes (serialised by workers). Keys are (run_id, task_id). A run's values are
dropped together (``drop_run``) when the run is over and its results were collected, or when the
retention time passes. Spilling moves the oldest values to one file each under ``spill_dir``;
reading a spilled value loads it back without re-admitting it to memory.

Dropping a run that held at least ``TRIM_AFTER_BYTES`` in memory also asks the C allocator to give
free memory back to the system (glibc's ``malloc_trim``): values are ordinary heap blocks, reused
while a run goes on, but once its values are gone an idle daemon would otherwise keep their pages
(a daemon that moved 100 MiB of values stayed ~100 MiB larger). It is done per run, not per value:
returned pages are faulted in again by the next values, which costs more than reusing them.
Values freed one by one while their run goes on (``drop_values``: no task needs them any more) count
towards their run's trim.

A value of ``SPILL_AWAY_BYTES`` or more is written to its spill file by a thread (issue 19 item 7:
writing a 1.1 GiB result held the daemon's loop ~8 s on a loaded machine): it stays in memory, and
is read from there, until the file is whole; then (``settle``, called on the loop when the thread
is done, and by every ``put``) it moves to the file. A failed background spill is logged and leaves
the value in memory, and the next ``put`` that needs a spill is refused with that ``StoreError``
(memory stays bounded; the one after tries again). Smaller values are written at once, as before.

Bounded: ``max_bytes`` caps what the store holds, in memory and spilled together (``Limits.
max_store_bytes``). A value that would pass it, or that cannot be kept because spilling failed (the
spill dir is full, not writable or gone), is refused with a ``StoreError`` that says what happened
and how to fix it; the store stays as it was (a value a failed spill could not move stays in memory),
and the executor fails the value's run with that message rather than leaving it hanging.
"""

from __future__ import annotations

import _thread
import errno
import functools
import itertools
import logging
import mmap
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from handoffd.store.block import hold_new

Key = tuple[str, str]

TRIM_AFTER_BYTES = 32 << 20  # in-memory bytes a dropped run must have held to trim the heap
# Values this large are spilled by a thread (a 4 MiB write took ~30 ms here under load).
SPILL_AWAY_BYTES = 4 << 20

log = logging.getLogger("handoffd.store")
_NONE: tuple[Any, Any] = (None, None)


class StoreError(Exception):
    """A value could not be kept here; the message names the cause and the fix."""


@dataclass
class StoreStats:
    in_memory_bytes: int = 0
    spilled_bytes: int = 0
    spills: int = 0
    values: int = 0


def _unmap_later_all(values: list[Any]) -> None:
    """``unmap_later`` each ``mmap`` of ``values`` (the rest are left to their last reference)."""
    for value in values:
        if type(value) is mmap.mmap:
            unmap_later(value)


class ResultStore:
    def __init__(
        self,
        memory_limit: int,
        spill_dir: str | None = None,
        max_bytes: int | None = None,
        max_value: int | None = None,
    ) -> None:
        self.memory_limit = memory_limit
        self.max_bytes = max_bytes  # in memory + spilled; None: no cap
        self.max_value = max_value  # one value (Limits.max_value_bytes); None: no cap
        self._spill_root = spill_dir
        self._spill_dir: str | None = None  # created on first spill
        # Insertion order = spill order: a dict keeps it (an ``OrderedDict``'s own links cost a
        # node a value, and nothing here moves a key within the order)
        self._memory: dict[Key, Any] = {}
        self._spilled: dict[Key, tuple[str, int]] = {}  # key -> (path, size)
        # A value in memory by its key, or None (then ``get``: it may be spilled): the executor
        # looks up every input of every task, and this is no Python call and no key built twice.
        self.peek = self._memory.get
        self._by_run: dict[str, set[str]] = {}
        self.stats = StoreStats()
        self.trims = 0  # times a dropped run's memory was handed back to the system
        self._freed: dict[str, int] = {}  # run -> in-memory bytes drop_values freed
        # Values a thread is writing to their spill file (still in ``_memory``), and what the
        # threads finished: (key, value, path or "", error or None), applied by ``settle``.
        self._writing: dict[Key, Any] = {}
        self._writing_bytes = 0
        self._written: deque[tuple[Key, Any, str, OSError | None]] = deque()
        self._threads: list[threading.Event] = []  # one per spill thread, set when it is over
        self._spill_failed: str | None = None  # why the last background spill failed

    def put(self, run_id: str, task_id: str, value: Any) -> None:
        """Keep a value (bytes-like: an assembled one is an mmap, ``store.chunks``); raises
        StoreError (holding nothing new) when a cap or a spill stops it."""
        key = (run_id, task_id)
        if self._written:  # (two calls fewer per value when nothing is to be done: once a task)
            self.settle()
        memory, size, stats = self._memory, len(value), self.stats  # (once a task: read once)
        spilled = self._spilled  # (mostly empty: no look-up of the key then)
        if key in memory or (spilled and key in spilled):
            self._discard(key)
        if self.max_value is not None and size > self.max_value:
            raise StoreError(
                f"the value of run {run_id!r}, task {task_id!r} is {size} bytes, over "
                f"max_value_bytes={self.max_value}: return smaller values (or a file path), or "
                "start every node with a larger limit (handoffd start --limit max_value_bytes=BYTES)"
            )
        if self.max_bytes is not None:
            held = stats.in_memory_bytes + stats.spilled_bytes
            if held + size > self.max_bytes:
                raise StoreError(
                    f"the result store of this node holds {held} bytes and a value of {size} "
                    f"bytes (run {run_id!r}, task {task_id!r}) would pass its cap of "
                    f"{self.max_bytes} bytes (max_store_bytes): collect or release finished "
                    "runs' results sooner, return smaller values, or raise the cap "
                    "(handoffd start --limit max_store_bytes=BYTES)"
                )
        memory[key] = value
        tasks = self._by_run.get(run_id)
        if tasks is None:  # (no empty set built a task for ``setdefault``)
            tasks = self._by_run[run_id] = set()
        tasks.add(task_id)
        in_memory = stats.in_memory_bytes = stats.in_memory_bytes + size
        stats.values += 1
        if in_memory > self.memory_limit:
            failed, self._spill_failed = self._spill_failed, None
            if failed is not None:  # as a spill failing now: memory stays bounded
                self._discard(key)
                raise StoreError(failed)
            try:
                self._spill()
            except OSError as exc:
                self._discard(key)
                raise StoreError(spill_failed(exc, self._spill_root)) from exc

    def put_all(
        self, run_id: str, task_ids: list[str], values: Sequence[Any], sizes: list[int]
    ) -> bool:
        """``put`` of each value (``sizes``: their lengths), in order, when none of those puts
        could raise, spill or replace a value held (True); else nothing is held and False: the
        caller puts them one by one (a refusal is then told for its own task)."""
        if self._written:
            self.settle()
        count = len(task_ids)
        stats = self.stats
        total = sum(sizes)
        if (
            (self.max_value is not None and max(sizes, default=0) > self.max_value)
            or (
                self.max_bytes is not None
                and stats.in_memory_bytes + stats.spilled_bytes + total > self.max_bytes
            )
            or stats.in_memory_bytes + total > self.memory_limit
            # (a value held or spilled, or a task twice: the second put replaces the first)
            or not hold_new(self._memory, self._spilled, run_id, task_ids, values)
        ):
            return False
        tasks = self._by_run.get(run_id)
        if tasks is None:
            tasks = self._by_run[run_id] = set()
        tasks.update(task_ids)
        stats.in_memory_bytes += total
        stats.values += count
        return True

    def get(self, run_id: str, task_id: str) -> Any:
        key = (run_id, task_id)
        value = self._memory.get(key)
        if value is not None:
            return value
        spilled = self._spilled.get(key)
        if spilled is None:
            return None
        try:
            with open(spilled[0], "rb") as f:
                return f.read()
        except OSError:
            return None

    def read(self, run_id: str, task_id: str, offset: int, length: int) -> Any:
        """``length`` bytes of a value from ``offset`` (a chunk for a peer: ``store.chunks``):
        a view of a value in memory, a ranged read of a spilled one; None if not held."""
        key = (run_id, task_id)
        value = self._memory.get(key)
        if value is not None:
            return memoryview(value)[offset : offset + length]
        spilled = self._spilled.get(key)
        if spilled is None:
            return None
        try:
            with open(spilled[0], "rb") as f:
                return os.pread(f.fileno(), length, offset)
        except OSError:
            return None

    def has(self, run_id: str, task_id: str) -> bool:
        key = (run_id, task_id)
        return key in self._memory or key in self._spilled

    def size(self, run_id: str, task_id: str) -> int:
        key = (run_id, task_id)
        if key in self._memory:
            return len(self._memory[key])
        return self._spilled.get(key, ("", 0))[1]

    def runs(self) -> list[str]:
        return list(self._by_run)

    def tasks_of(self, run_id: str) -> set[str]:
        return set(self._by_run.get(run_id, ()))

    def drop(self, run_id: str, task_id: str) -> None:
        """Forget one value (a fetched copy nobody here needs any more)."""
        self._discard((run_id, task_id))

    def drop_values(self, run_id: str, task_ids: Iterable[str]) -> int:
        """Forget these values of a run (no task needs them any more); returns the in-memory
        bytes freed. No trim here (the run's next values reuse the blocks); the bytes count
        towards the run's trim when it is dropped."""
        before = self.stats.in_memory_bytes
        for task_id in task_ids:
            self._discard((run_id, task_id))
        freed = before - self.stats.in_memory_bytes
        if freed:
            self._freed[run_id] = self._freed.get(run_id, 0) + freed
        return freed

    def drop_run(self, run_id: str) -> int:
        """Forget every value of a run; returns how many were dropped."""
        tasks = self._by_run.pop(run_id, ())
        if len(tasks) == 1 and not self._spilled:
            # A one-task call's run: its value out of memory as ``_discard`` takes it, with no
            # ``map`` pass to set up (a spilled store takes the general path below)
            (task_id,) = tasks
            value = self._memory.pop((run_id, task_id), None)
            freed = 0
            if value is not None:
                freed = len(value)
                stats = self.stats
                stats.in_memory_bytes -= freed
                stats.values -= 1
                if type(value) is mmap.mmap:
                    unmap_later(value)
                del value  # (unreferenced before a trim, as below)
            if freed + self._freed.pop(run_id, 0) >= TRIM_AFTER_BYTES:
                self.trims += release_free_memory()
            return 1
        before = self.stats.in_memory_bytes
        # ``_discard`` of each, its in-memory part taken out by ``map``s (the keys built by
        # ``zip``, the pops and the byte count in C: a W1 run's end drops 10,000 values here) and
        # the counts summed once; a spilled copy still goes through ``_discard``.
        memory, spilled = self._memory, self._spilled
        values = len(memory)  # (those dropped are counted once, by what ``memory`` lost)
        keys = zip(itertools.repeat(run_id), tasks)
        dropped = list(map(memory.pop, keys, itertools.repeat(None)))
        freed = sum(map(len, filter(None, dropped)))  # (None: not in memory)
        if mmap.mmap in set(map(type, dropped)):  # (an assembled value: unmapped off the loop)
            _unmap_later_all(dropped)
        # (the values must be unreferenced here: the trim below gives back only what is free)
        del dropped
        if spilled:
            for task_id in tasks:
                key = (run_id, task_id)
                if key in spilled:
                    self._discard(key, forget_run=False)
        count = values - len(memory)
        self.stats.in_memory_bytes -= freed
        self.stats.values -= count
        held = before - self.stats.in_memory_bytes + self._freed.pop(run_id, 0)
        if held >= TRIM_AFTER_BYTES:
            self.trims += release_free_memory()
        return len(tasks)

    def close(self) -> None:
        self._memory.clear()
        self._spilled.clear()
        self._by_run.clear()
        self._freed.clear()
        self._writing.clear()
        self._writing_bytes = 0
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)
            self._spill_dir = None

    def _discard(self, key: Key, forget_run: bool = True) -> None:
        value = self._memory.pop(key, None)
        if value is not None:
            self.stats.in_memory_bytes -= len(value)
            self.stats.values -= 1
            if type(value) is mmap.mmap:
                unmap_later(value)
        spilled = self._spilled.pop(key, None)
        if spilled is not None:
            self.stats.spilled_bytes -= spilled[1]
            self.stats.values -= 1
            try:
                os.unlink(spilled[0])
            except OSError:
                pass
        if forget_run and (value is not None or spilled is not None):
            tasks = self._by_run.get(key[0])
            if tasks is not None:
                tasks.discard(key[1])
                if not tasks:
                    del self._by_run[key[0]]

    def _spill(self) -> None:
        """Move the oldest values to files until memory is within budget (counting those a
        thread is writing as gone); an OSError leaves the value it was moving in memory (first
        in line again) and goes to the caller."""
        self.settle()
        if self._spill_dir is None:
            self._spill_dir = tempfile.mkdtemp(prefix="handoffd-spill-", dir=self._spill_root)
        writing = self._writing
        while self.stats.in_memory_bytes - self._writing_bytes > self.memory_limit:
            # the oldest value no thread is writing already
            key, value = next(((k, v) for k, v in self._memory.items() if k not in writing), _NONE)
            if value is None:
                break
            if len(value) >= SPILL_AWAY_BYTES:
                self._spill_away(key, value)
                continue
            try:
                path = _write_file(self._spill_dir, value)
            except OSError as exc:
                if exc.errno == errno.ENOENT:  # our dir was removed: make it again next time
                    self._spill_dir = None
                raise
            del self._memory[key]
            self._spilled[key] = (path, len(value))
            self.stats.in_memory_bytes -= len(value)
            self.stats.spilled_bytes += len(value)
            self.stats.spills += 1

    def _spill_away(self, key: Key, value: Any) -> None:
        """Write ``value`` to its spill file in a thread; ``settle`` moves it there once done."""
        import asyncio  # here: the executor's state machine imports this module without a loop

        directory = self._spill_dir
        assert directory is not None
        try:
            notify: Callable[[], Any] | None = functools.partial(
                asyncio.get_running_loop().call_soon_threadsafe, self.settle
            )
        except RuntimeError:  # no loop (a tool, a test): the next put or settle() applies it
            notify = None
        written = self._written
        over = threading.Event()

        def write() -> None:
            try:
                written.append((key, value, _write_file(directory, value), None))
            except OSError as exc:
                written.append((key, value, "", exc))
            over.set()
            if notify is not None:
                try:
                    notify()
                except RuntimeError:  # the loop is closed
                    pass

        self._writing[key] = value
        self._writing_bytes += len(value)
        self._threads = [t for t in self._threads if not t.is_set()]
        self._threads.append(over)
        # Not threading.Thread.start(): it waits until the new thread runs (up to ~0.1 s here).
        _thread.start_new_thread(write, ())

    def settle(self) -> None:
        """Apply the spills threads finished: each value whose file is whole leaves memory (if
        it is still the one kept under its key; else its file goes)."""
        written = self._written
        while written:
            key, value, path, error = written.popleft()
            size = len(value)
            if self._writing.get(key) is value:
                del self._writing[key]
                self._writing_bytes -= size
            if error is not None:
                if error.errno == errno.ENOENT:  # our dir was removed: make it again next time
                    self._spill_dir = None
                if self._memory.get(key) is value:
                    self._spill_failed = spill_failed(error, self._spill_root)
                    log.error("%s", self._spill_failed)
                continue
            if self._memory.get(key) is not value:  # dropped or replaced meanwhile
                _unlink(path)
                continue
            del self._memory[key]
            self._spilled[key] = (path, size)
            self.stats.in_memory_bytes -= size
            self.stats.spilled_bytes += size
            self.stats.spills += 1
            if type(value) is mmap.mmap:
                unmap_later(value)

    def wait_spills(self, timeout: float | None = None) -> None:
        """Wait for the spill threads, then ``settle`` (tools and tests)."""
        for over in list(self._threads):
            over.wait(timeout)
        self.settle()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


_doomed: list[mmap.mmap] = []  # assembled values dropped here, unmapped once nobody holds them
_doomed_lock = threading.Lock()
_reaper: list[threading.Thread] = []
REAP_EVERY = 0.05  # seconds between looks at what is still held


def unmap_later(value: mmap.mmap) -> None:
    """Unmap an assembled value (``store.chunks``) in a thread once nothing else holds it: a job
    or a send may still use it; the last reference dropped on the loop cost it ~0.1-0.4 s per
    600 MiB (munmap), ``mmap.close`` releases the GIL for it."""
    with _doomed_lock:
        _doomed.append(value)
        if not _reaper:
            thread = threading.Thread(target=_reap, name="handoffd-unmap", daemon=True)
            _reaper.append(thread)
            thread.start()


def _reap() -> None:
    while True:
        time.sleep(REAP_EVERY)
        with _doomed_lock:
            # held only by the list, the loop's name and getrefcount's argument: nobody else
            free = [v for v in _doomed if sys.getrefcount(v) <= 3]
            if free:
                _doomed[:] = [v for v in _doomed if all(v is not f for f in free)]
            if not _doomed and not free:
                _reaper.clear()
                return
        for value in free:
            try:
                value.close()
            except BufferError:  # exported meanwhile (cannot be: nobody held it); freed as usual
                pass
        del free


def _write_file(directory: str, value: bytes) -> str:
    fd, path = tempfile.mkstemp(dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(value)
    except BaseException as exc:
        try:
            os.unlink(path)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = path  # ENOSPC on write names no file: say where
        raise
    return path


def spill_failed(exc: OSError, spill_root: str | None) -> str:
    """What a failed spill tells the run it fails: where, what, and what to do."""
    where = exc.filename or spill_root or tempfile.gettempdir()
    code = errno.errorcode.get(exc.errno or 0, "error")
    why = exc.strerror or str(exc)
    return (
        f"this node's result store could not spill a value to disk at {where}: {why} ({code}); "
        "make the spill dir writable with free space (handoffd start --spill-dir DIR), or give "
        "the store more memory (--store-memory MB)"
    )


def release_free_memory() -> int:
    """Return the C heap's free pages to the system; 1 if done, 0 where glibc is not available."""
    global _malloc_trim
    if _malloc_trim is None:
        _malloc_trim = _find_malloc_trim()
    if _malloc_trim is False:
        return 0
    _malloc_trim(0)
    return 1


def _find_malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (e.g. musl has no malloc_trim)
        return False


_malloc_trim: Any = None  # the libc function, False if unavailable, None until first needed

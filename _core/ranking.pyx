# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled ordering kernel: a run's tasks in placement order with their upward ranks.

Split out of ``sched.pyx`` (one module per responsibility: ``sched`` places and fills windows over
dicts, this one ranks a submission's DAG). ``order`` has the name, signature and answers of the
pure-Python twin's ``sched_py.order``; ``sched`` re-exports it and counts its decisions with the
others (``ordered``). The item readers ``_integer`` and ``_number`` are shared with ``sched``
(``ranking.pxd``): one wording for a bad item in every kernel.
"""

from libc.math cimport isfinite
from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t
from libc.stdlib cimport malloc
from libc.stdlib cimport free as c_free

from .binpack cimport TaskKey, rank_kernel, sort_tasks

from operator import index as as_index

from ._consts import cycle_error, item_error, let_others_run

__all__ = ["order", "ordered"]

cdef unsigned long long _ordered = 0


def ordered():
    """Tasks ordered by this kernel so far (``sched.decisions``' ``order`` count)."""
    return _ordered


cdef object _integer(object value, str name, Py_ssize_t i):
    if isinstance(value, bool):
        raise item_error(name, i, value, "is not an integer")
    try:
        return as_index(value)
    except TypeError:
        raise item_error(name, i, value, "is not an integer") from None



cdef double _number(object value, str name, Py_ssize_t i, bint negative) except? -1.0:
    cdef double q
    if type(value) is float:
        q = value
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise item_error(name, i, value, "is not a number")
    else:
        try:
            q = float(value)
        except OverflowError:
            raise item_error(name, i, value, "is not a finite number") from None
    if not isfinite(q):
        raise item_error(name, i, value, "is not a finite number")
    if q < 0.0 and not negative:
        raise item_error(name, i, value, "is negative")
    return q


# Items read or made with the GIL held between two chances for other threads to take it: a
# 1,000,000-task run is ordered in the daemon's upload thread, and compiled loops never let the
# GIL go by themselves (the event loop waited for all of them, ~0.2-0.6 s).
cdef enum:
    _YIELD_EVERY = 16384


cdef inline int _yield_gil() except -1:
    """Let a thread waiting for the GIL have it (``_consts.let_others_run``)."""
    let_others_run()
    return 0


def order(priority, consumers, estimate, size):
    """(task order, upward rank per task); see ``sched_py.order``."""
    global _ordered
    cdef Py_ssize_t n = len(consumers), i, t, j, n_edges = 0, done
    for name, seq in (("priority", priority), ("estimate", estimate), ("size", size)):
        if len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries but consumers has {n}")
    for cs in consumers:
        n_edges += len(cs)
    # int64: priority, indptr, indices, remaining, producer_ptr, producers, ready
    cdef int64_t* ibuf = <int64_t*>malloc((5 * (n + 1) + 2 * (n_edges + 1)) * sizeof(int64_t))
    cdef double* dbuf = <double*>malloc(3 * (n + 1) * sizeof(double))
    cdef TaskKey* keys = <TaskKey*>malloc((n + 1) * sizeof(TaskKey))
    cdef int64_t* prio = ibuf
    cdef int64_t* indptr = ibuf + (n + 1)
    cdef int64_t* remaining = ibuf + 2 * (n + 1)
    cdef int64_t* producer_ptr = ibuf + 3 * (n + 1)
    cdef int64_t* ready = ibuf + 4 * (n + 1)
    cdef int64_t* indices = ibuf + 5 * (n + 1)
    cdef int64_t* producers = indices + (n_edges + 1)
    cdef double* est = dbuf
    cdef double* sizes = dbuf + (n + 1)
    cdef double* rank = dbuf + 2 * (n + 1)
    try:
        if ibuf == NULL or dbuf == NULL or keys == NULL:
            raise MemoryError(f"ordering buffers for {n} tasks")
        i = 0
        for p in priority:
            v = _integer(p, "priority", i)
            if not INT64_MIN <= v <= INT64_MAX:
                raise item_error("priority", i, v, "does not fit in 64 bits")
            prio[i] = v
            i += 1
            if i % _YIELD_EVERY == 0:
                _yield_gil()
        i = 0
        for e in estimate:
            est[i] = _number(e, "estimate", i, False)
            i += 1
            if i % _YIELD_EVERY == 0:
                _yield_gil()
        i = 0
        for s in size:
            sizes[i] = _number(s, "size", i, True)
            i += 1
            if i % _YIELD_EVERY == 0:
                _yield_gil()
        indptr[0] = 0
        t = 0
        for cs in consumers:
            j = 0
            name = None
            for value in cs:
                if name is None:
                    name = f"consumers[{t}]"
                v = _integer(value, name, j)
                if not 0 <= v < n:
                    raise item_error(name, j, v, f"is out of range: task indices are 0..{n - 1}")
                indices[indptr[t] + j] = v
                j += 1
            indptr[t + 1] = indptr[t] + j
            t += 1
            if t % _YIELD_EVERY == 0:
                _yield_gil()
        if indptr[n] != n_edges:
            raise ValueError("consumers changed while it was read")
        with nogil:
            done = rank_kernel(
                indptr, indices, est, n, rank, remaining, producer_ptr, producers, ready
            )
        if done != n:
            raise cycle_error([t for t in range(n) if remaining[t] > 0])
        with nogil:
            for t in range(n):
                keys[t].priority = prio[t]
                keys[t].rank = rank[t]
                keys[t].size = sizes[t]
                keys[t].index = t
            sort_tasks(keys, n)
        ordered = []
        ranks = []
        for t in range(n):
            ordered.append(keys[t].index)
            ranks.append(rank[t])
            if t % _YIELD_EVERY == _YIELD_EVERY - 1:
                _yield_gil()
        result = (ordered, ranks)
    finally:
        c_free(ibuf)
        c_free(dbuf)
        c_free(keys)
    _ordered += n
    return result

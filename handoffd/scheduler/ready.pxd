# cython: language_level=3
# Types for ready.py, compiled beside it (as run.pxd): the ready queue's pushes, discards and heap
# heads read the task records' C fields.

cimport cython

from handoffd.scheduler.run cimport RunState, TaskRecord


cdef Py_ssize_t _LINE_CUT

cpdef tuple _key(RunState run, TaskRecord rec)
@cython.locals(value=Py_ssize_t, parent=Py_ssize_t, higher=Py_ssize_t)
cpdef void _sift_down(list heap, Py_ssize_t start, Py_ssize_t pos) except *
@cython.locals(
    end=Py_ssize_t, start=Py_ssize_t, child=Py_ssize_t, right=Py_ssize_t, first=Py_ssize_t,
    second=Py_ssize_t,
)
cpdef void _sift_up(list heap, Py_ssize_t pos) except *
cpdef void _heap_push(list heap, object order) except *
cpdef object _heap_pop(list heap)
@cython.locals(line=list, at=Py_ssize_t, n=Py_ssize_t, last=Py_ssize_t, first=Py_ssize_t)
cpdef void _entry_push(RunState run, Py_ssize_t order) except *
@cython.locals(heap=list, at=Py_ssize_t, top=Py_ssize_t, first=Py_ssize_t)
cpdef Py_ssize_t _entry_head(RunState run) except -2
@cython.locals(heap=list, line=list, at=Py_ssize_t, n=Py_ssize_t, top=object, value=Py_ssize_t, first=Py_ssize_t)
cpdef object _entry_pop(RunState run)
cpdef void _entries_clear(RunState run) except *
cpdef bint has_entries(RunState run) except -1


cdef class ReadyQueue:
    cdef public Py_ssize_t size
    cdef public Py_ssize_t weightless
    cdef public dict shapes
    cdef public dict runs
    cdef public set held
    cdef public list _taken
    cdef public list _blocks
    cdef public list _heads
    cdef public RunState _single
    cdef public RunState _last
    cdef public tuple _hot
    cdef public tuple _hot_items
    cdef public object _hot_node
    cdef public Py_ssize_t _hot_n

    @cython.locals(items=tuple, node=object, hot_items=tuple)
    cpdef bint push(self, RunState run, TaskRecord rec)
    @cython.locals(
        firsts=list, k=Py_ssize_t, i=Py_ssize_t, first=TaskRecord, items=tuple, node=object,
        n=Py_ssize_t, head=TaskRecord, rec=TaskRecord, hot_items=tuple
    )
    cpdef list push_all(self, RunState run, list recs)
    @cython.locals(items=tuple, node=object, hot_items=tuple)
    cpdef discard(self, TaskRecord rec)
    @cython.locals(hot=tuple, left=Py_ssize_t)
    cpdef _count(self, tuple shape, Py_ssize_t delta)
    @cython.locals(hot=tuple)
    cpdef dict shape_counts(self)
    @cython.locals(rec=TaskRecord)
    cpdef drop_run(self, RunState run)
    @cython.locals(rec=TaskRecord, at=Py_ssize_t, ordered=list)
    cpdef drop_ended(self, RunState run, Py_ssize_t lo, Py_ssize_t hi)
    @cython.locals(live=bint, rec=TaskRecord, top=Py_ssize_t)
    cpdef TaskRecord _head(self, RunState run)
    @cython.locals(
        heads=list, live=list, recs=list, run=RunState, rec=TaskRecord, i=Py_ssize_t, runs=dict
    )
    cpdef begin(self)
    @cython.locals(run=RunState, rec=TaskRecord, nxt=TaskRecord, last=RunState, heads=list)
    cpdef tuple step(self)
    @cython.locals(nxt=TaskRecord)
    cpdef bint like_next(self, RunState run, TaskRecord rec) except -1
    @cython.locals(
        taken=list, cost=object, pin=object, nxt=TaskRecord, line=list, ordered=list,
        at=Py_ssize_t, n=Py_ssize_t, top=Py_ssize_t, slot=TaskRecord
    )
    cpdef list take_like(self, RunState run, TaskRecord rec, Py_ssize_t limit)
    @cython.locals(i=Py_ssize_t, rec=TaskRecord, taken=list)
    cpdef give_back(self, RunState run, Py_ssize_t keep)
    @cython.locals(first=TaskRecord, items=tuple, node=object, n=Py_ssize_t, rec=TaskRecord, hot_items=tuple)
    cpdef discard_all(self, list recs)
    @cython.locals(run=RunState, rec=TaskRecord, taken=list)
    cpdef restore(self)
    cpdef _put_back(self, RunState run, TaskRecord rec)

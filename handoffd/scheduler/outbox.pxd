# cython: language_level=3
# Types for outbox.py, compiled beside it (as lost.pxd): the owner's books write dispatches and
# every scheduler call ends in ``take``, through C fields.

cimport cython
from cpython.type cimport PyType_GenericAlloc as _alloc

from handoffd.scheduler.run cimport RunState, TaskRecord


@cython.locals(run=RunState)
cdef long long _term_in(dict runs, str run_id, long long term) except? -1


cdef class Placed:
    cdef public list flat
    cdef public list inputs
    cdef public list groups
    cdef object _payload
    cdef object _cost
    cdef object _inclusion
    cdef object _timeout

    @cython.locals(n=Py_ssize_t, flat=list)
    cpdef add(
        self, object task_id, object attempt, object payload, object cost, object inclusion,
        object timeout, object inputs, object priority, double rank
    )
    cdef _group(self, Py_ssize_t n, object payload, object cost, object inclusion, object timeout)
    @cython.locals(n=Py_ssize_t, flat=list, rec=TaskRecord, spec=object, task_id=str, inputs=tuple, alike=tuple)
    cpdef add_all(self, RunState run, list recs)
    cpdef Py_ssize_t size(self)
    @cython.locals(groups=list, ends=list, g=tuple)
    cpdef list runs(self)
    @cython.locals(out=list, inputs=list, flat=list, i=Py_ssize_t, size=Py_ssize_t)
    cpdef tuple tasks(self)


@cython.locals(placed=Placed)
cpdef Placed placed_of(object items)


cdef class Outbox:
    cdef public list direct
    cdef public dict cancels
    cdef public dict dispatches
    cdef public dict frees
    cdef public dict withdraws

    @cython.locals(result=list, items=list, runs=dict, placed=Placed)
    cpdef list take(self, object term_of, long long term=*)

# cython: language_level=3
# Types for outbox.py, compiled beside it (as lost.pxd): the owner's books write dispatches and
# every scheduler call ends in ``take``, through C fields.

cimport cython
from cpython.type cimport PyType_GenericAlloc as _alloc

from handoffd.scheduler.run cimport RunState


@cython.locals(run=RunState)
cdef long long _term_in(dict runs, str run_id, long long term) except? -1


cdef class Outbox:
    cdef public list direct
    cdef public dict cancels
    cdef public dict dispatches
    cdef public dict frees
    cdef public dict withdraws

    @cython.locals(result=list, items=list, runs=dict)
    cpdef list take(self, object term_of, long long term=*)

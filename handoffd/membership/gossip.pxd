# cython: language_level=3
# Types for gossip.py, compiled beside it (as records.pxd): the queue's buckets are threaded through
# records.Member's typed q* fields, so moving a record is a few C field writes.

cimport cython

from handoffd.membership.records cimport Member


cdef class GossipQueue:
    cdef public dict _queued
    cdef public long long added
    cdef public list _heads
    cdef public list _tails
    cdef public Py_ssize_t _bulk

    cpdef void add(self, str name, bint bulk=*, Member record=*) except *
    @cython.locals(record=Member)
    cpdef void discard(self, str name) except *
    @cython.locals(heads=list, tail=Member)
    cdef void _append(self, Member record, Py_ssize_t count) except *
    @cython.locals(prev=Member, after=Member)
    cdef void _unlink(self, Member record) except *
    cdef void _retire(self, Member record) except *
    @cython.locals(record=Member)
    cpdef void heard(self, str name, Py_ssize_t limit, Py_ssize_t own=*) except *
    @cython.locals(count=Py_ssize_t)
    cpdef void heard_record(self, Member record, Py_ssize_t limit, Py_ssize_t own=*) except *
    @cython.locals(
        chosen=list, heads=list, walked=list, full=bint, count=Py_ssize_t, record=Member,
        retire_bulk=bint, moved=Py_ssize_t,
    )
    cpdef list take(
        self, Py_ssize_t room, Py_ssize_t limit, set seen, Py_ssize_t bulk_limit=*, list held=*
    )

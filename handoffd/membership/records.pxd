# cython: language_level=3
# Types for records.py, compiled beside it (as handoffd/scheduler/run.pxd): the .py stays the
# pure-Python build and the reference tests/unit/test_membership_builds.py holds this one to; this
# file makes the per-event structures C classes with typed fields, so a merge's or a piggyback's
# dict work is direct C-API calls instead of attribute and method lookups.

cimport cython


cpdef bint supersedes(object new, object old)


cdef class Member:
    # (the fields a merge reads per entry first: one cache line with the object's head)
    cdef public object state
    cdef public object suspicion
    cdef public Py_ssize_t qcount
    cdef public bint qbulk
    cdef public Member qnext
    cdef public Member qprev
    cdef public str qname
    cdef public double changed_at
    cdef public object suspect_deadline
    cdef public bint reaped


cdef class Counters:
    cdef public long long dropped_other_cluster
    cdef public long long dropped_incompatible
    cdef public long long refutations
    cdef public long long probes
    cdef public long long probes_failed
    cdef public long long messages_sent
    cdef public dict extra


cdef class ProbeInFlight:
    cdef public object probe_id
    cdef public str target
    cdef public double direct_deadline
    cdef public double final_deadline
    cdef public bint indirect_sent
    cdef public long long nacks


cdef class Relay:
    cdef public str origin_address
    cdef public str origin_name
    cdef public object origin_probe_id
    cdef public str target
    cdef public double deadline
    cdef public double nack_at
    cdef public bint nacked

cpdef bint same(object a, object b)
cpdef object merged(object cur, object u, bint state_newer, bint resources_newer)
cpdef object accused(object state, str accuser)
cpdef bint merged_is(object cur, object u, bint state_newer, bint resources_newer) except -1


@cython.locals(bits=Py_ssize_t, m=Py_ssize_t, r=Py_ssize_t)
cpdef Py_ssize_t below(object rng, Py_ssize_t n) except -1
@cython.locals(n=Py_ssize_t, i=Py_ssize_t, j=Py_ssize_t, chosen=list, pool=list, selected=set)
cpdef list sample(object rng, list items, Py_ssize_t k)
cpdef object choice(object rng, list items)


cdef class IndexedSet:
    cdef public list _items
    cdef public dict _index

    cpdef void add(self, str name)
    cpdef void discard(self, str name)
    cpdef list sample(self, object rng, Py_ssize_t k, object exclude=*)
    cpdef object choice(self, object rng)


cdef class Timers:
    cdef public list _heap
    cdef public object _due
    cdef public bint _fresh

    cpdef void add(self, double at, str name)
    cpdef void changed(self)
    @cython.locals(heap=list)
    cpdef void _drop_stale(self)
    cpdef object earliest(self)
    @cython.locals(due=list, heap=list)
    cpdef list pop_due(self, double now)


cdef class PeerIndex:
    cdef public str _me
    cdef public dict _members
    cdef public double _reap_after
    cdef public IndexedSet live
    cdef public IndexedSet dead
    cdef public Timers timers

    cpdef object due(self, str name, Member m=*)
    cpdef void moved(self, object new, Member record=*)
    cpdef void forget(self, str name)


@cython.locals(chosen=list, seen=set, walked=Member, record=Member)
cpdef tuple page(object me, object must_refute, dict members, list order, Py_ssize_t size)

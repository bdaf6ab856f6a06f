# cython: language_level=3
# Types for swim.py, compiled beside it (as records.pxd): Membership is a C class on probing's
# Prober, its fields typed, and the steps every message or tick takes (a merge, a piggyback, the
# gossip queue's calls) are cpdef methods called in C.

cimport cython

from handoffd.membership.probing cimport Prober
from handoffd.membership.gossip cimport GossipQueue
from handoffd.membership.records cimport IndexedSet, Member, PeerIndex, ProbeInFlight

cdef long _ALIVE, _SUSPECT, _DEAD


cdef class Membership(Prober):
    cdef public str cluster
    cdef public set _name_clashes
    cdef public set _incompatible
    cdef public GossipQueue _queue
    cdef public Member _own
    cdef public Py_ssize_t _limit_live
    cdef public Py_ssize_t _limit
    cdef public PeerIndex _index
    cdef public IndexedSet _dead
    cdef public list _page_order
    cdef public dict _asked
    cdef public dict _contested
    cdef public double _next_gossip_at
    cdef public double _next_push_pull_at
    cdef public long long _quiet_syncs
    cdef public object history

    @cython.locals(at=double, probe=ProbeInFlight)
    cpdef double next_deadline(self) except? -1
    @cython.locals(out=list)
    cpdef list handle(self, object event, double now)
    @cython.locals(m=Member, view=Member)
    cpdef void _tick(self, double now, list out) except *
    @cython.locals(out=list)
    cpdef list receive(self, str sender, object address, object msg, double now)
    @cython.locals(sent=Py_ssize_t)
    cpdef list _counted(self, list out)
    @cython.locals(
        sender=Member, member=bint, told=Py_ssize_t, moves=Py_ssize_t, young=bint, record=Member,
        status=long,
    )
    cpdef void _received(
        self, str name, object sender_address, object msg, double now, list out
    ) except *
    cpdef void _confirm(self, Member record, str accuser, double now) except *
    cpdef void _sync_sooner(self, Py_ssize_t moves, double now) except *
    cpdef void _count(self, str reason, object n=*) except *
    @cython.locals(
        refuted=bint, room=Py_ssize_t, members=dict, limit=Py_ssize_t, own=Py_ssize_t,
        queue=GossipQueue, known=Member,
    )
    cpdef bint _merge(
        self, object updates, double now, list out, object why, object sender=*, bint page=*,
        Member sender_record=*,
    ) except -1
    @cython.locals(state_newer=bint, resources_newer=bint)
    cpdef void _merge_other(
        self, object u, double now, list out, str cause, bint firsthand, bint page=*,
        Member record=*,
    ) except *
    cpdef void _set(self, object new, double now, list out, str cause, Member record=*) except *
    cpdef void _enqueue(self, str name) except *
    @cython.locals(live=Py_ssize_t, limit=Py_ssize_t)
    cpdef Py_ssize_t _retransmit_limit(self) except -1
    @cython.locals(
        members=dict, chosen=list, seen=set, room=Py_ssize_t, status=long, held=list, record=Member,
    )
    cpdef tuple _piggyback(self, object receiver, Member view=*)

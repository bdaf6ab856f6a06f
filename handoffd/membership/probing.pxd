# cython: language_level=3
# Types for probing.py, compiled beside it (as records.pxd): Prober is the C base class of
# swim.Membership, so it declares the fields of Membership's its methods use (the view, the live
# peers, the counters) as well as its own; the per-probe and per-relay steps are cpdef.

cimport cython

from handoffd.membership.records cimport Counters, IndexedSet, Member, ProbeInFlight, Relay

cdef long _ALIVE, _SUSPECT


cdef class Prober:
    # Membership's fields that the probe half reads (probing.py's module doc).
    cdef public str name
    cdef public object config
    cdef public Counters counters
    cdef public object _rng
    cdef public dict _members
    cdef public IndexedSet _live
    cdef public bint _left
    # The probe half's own.
    cdef public list _probe_order
    cdef public Py_ssize_t _probe_index
    cdef public ProbeInFlight _probe
    cdef public dict _relays
    cdef public long long _next_id
    cdef public double _next_probe_at
    cdef public object _health
    cdef public double _judge_after
    cdef public bint _verdicts_held
    cdef public dict _told_dead

    # Membership's (overridden there).
    cpdef tuple _piggyback(self, object receiver, Member view=*)
    cpdef void _set(self, object new, double now, list out, str cause, Member record=*) except *
    cpdef void _count(self, str reason, object n=*) except *
    cpdef void _confirm(self, Member record, str accuser, double now) except *

    @cython.locals(probe_id=object, target=Member)
    cpdef void _start_probe(self, double now, list out) except *
    @cython.locals(chosen=list, probe=ProbeInFlight, target=Member, status=long, relay=Member)
    cpdef void _advance_probe(self, double now, list out) except *
    cpdef void _probe_succeeded(self) except *
    @cython.locals(record=Member, status=long)
    cpdef Member _next_probe_target(self)
    cpdef void _suspect(self, Member record, double now, list out) except *
    cpdef void _probe_soon(self, str name, object probers, object members) except *
    cpdef long long _new_id(self) except -1
    @cython.locals(probe=ProbeInFlight, relay=Relay)
    cpdef void _on_ack(self, object msg, str sender, list out) except *
    @cython.locals(target=Member)
    cpdef void _on_ping_req(
        self, object msg, str sender, bint member, object reply_to, double now, list out
    ) except *
    @cython.locals(relay=Relay)
    cpdef void _relay_timers(self, double now, list out) except *
    @cython.locals(earliest=double, at=double, r=Relay)
    cpdef double _relay_deadline(self) except? -1
    @cython.locals(probe=ProbeInFlight)
    cpdef void _on_nack(self, object msg, str sender) except *
    @cython.locals(probe=ProbeInFlight)
    cpdef void _on_indirect_ack(self, object msg) except *

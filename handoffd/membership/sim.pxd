# cython: language_level=3
# Types for sim.py, compiled beside it (as records.pxd): the simulator's loop, its nodes and its
# counts as C classes, so the per-event work (the heap, a delivery, a tick's reschedule) reads and
# writes struct fields. ``SimNode.membership`` stays an object: tests put wrappers there.

cimport cython
# (sim.py's ``import math``: libc's log, exp and sqrt, the functions math's call for a finite
# positive float, so the lognormal draw is the same floats without a Python call each)
from libc cimport math

from handoffd.membership.swim cimport Membership

cdef double _NV_MAGICCONST


cdef class LogNormalDelay:
    cdef public double base
    cdef public double mu
    cdef public double sigma

    @cython.locals(u1=double, u2=double, z=double, zz=double)
    cpdef double draw(self, object rng) except? -1


cdef class Calendar:
    cdef public double width
    cdef public dict _buckets
    cdef public list _keys
    cdef public list _current
    cdef public Py_ssize_t _pos
    cdef public long long _key

    @cython.locals(at=double, key=cython.longlong, bucket=list)
    cpdef void push(self, tuple entry) except *
    @cython.locals(bucket=list)
    cpdef double first(self) except? -1
    cpdef tuple pop(self)


cdef class SimNode:
    cdef public str name
    cdef public str address
    cdef public object membership
    cdef public bint crashed
    cdef public long long tick_generation
    cdef public double tick_at
    cdef public list seeds


cdef class SimStats:
    cdef public long long sent
    cdef public long long delivered
    cdef public long long lost
    cdef public long long blocked
    cdef public long long events
    cdef public dict by_type
    cdef public dict largest


cdef class Simulation:
    cdef public object config
    cdef public str cluster
    cdef public double latency
    cdef public double jitter
    cdef public double loss
    cdef public bint validate
    cdef public double now
    cdef public object rng
    cdef public dict nodes
    cdef public SimStats stats
    cdef public list changes
    cdef public dict _by_address
    cdef public set _blocked
    cdef public Calendar _events
    cdef public long long _seq
    cdef public object delay
    cdef public long long measure_bytes
    cdef public dict sampled
    cdef public dict largest_bytes
    cdef public double last_change
    cdef public object _witness
    cdef public dict _type_names

    @cython.locals(
        next_check=double, events=Calendar, nodes=dict, blocked=set, stats=SimStats, at=double,
        kind=int, node=SimNode, receiver=SimNode, sender=SimNode, due=double, generation=object,
        plain=Membership,
    )
    cpdef bint _run(
        self, double until, object condition, long long max_events, double check_every=*
    ) except -1
    @cython.locals(pending=list)
    cpdef void _retry_seeds(self, SimNode node) except *
    @cython.locals(changes=object, plain=Membership)
    cpdef void _handle(self, SimNode node, object event) except *
    @cython.locals(plain=Membership, changes=object)
    cpdef void _deliver(self, SimNode node, str src, str address, object msg) except *
    @cython.locals(plain=Membership)
    cpdef void _handled(self, SimNode node, list out, object changes) except *
    @cython.locals(
        stats=SimStats, by_type=dict, states=Py_ssize_t, delay=double, size=Py_ssize_t,
        count=object, total=object, frame=object, lognormal=LogNormalDelay,
    )
    cpdef void _send(self, SimNode node, object send) except *
    cpdef void _reschedule(self, SimNode node) except *
    @cython.locals(at=double)
    cpdef void _schedule(self, SimNode node, double due) except *
    cpdef void _push(self, double at, int kind, object payload) except *

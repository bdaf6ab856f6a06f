# cython: language_level=3
# Types for room_index.py, compiled beside it (as demand.pxd, which holds one): the placement pass
# asks the index for its rooms through C fields and vtable calls; the index refreshes them over the
# view typed as a ``RoomView`` (the view's C base, split out of demand.pxd, which cimports this
# file). _Ordered and NodeState are C classes too (a set and its cached order; a node's fields, its
# watched ones written by Python code through property setters); Nodes stays a Python class (a
# dict subclass), its body compiled;
# ``changed`` and ``reordered`` stay plain methods (Nodes holds them as values).

cimport cython

from handoffd.scheduler.room_view cimport RoomView


# (C constants: the renew's bit tests on Python ints were a number protocol call each)
cdef int IN_ROOM, IN_FILLABLE, IN_FREE, IN_WAVE, IN_HOLLOW


cdef class NodeState:
    cdef public str name
    cdef public object address
    cdef public bint _alive
    cdef public dict _capacity
    cdef public dict _free
    cdef public object version
    cdef public object _watch
    cdef public int _sets
    cdef public object _sets_of


cdef class _Ordered:
    cdef public set members
    cdef public list order

    @cython.locals(members=set)
    cpdef put(self, str name, bint inside)
    @cython.locals(members=set)
    cpdef list ordered(self, dict position)


cdef class RoomIndex:
    cdef public set dirty
    cdef public dict room
    cdef public _Ordered _with_room
    cdef public dict _position
    cdef public object _alive
    cdef public Py_ssize_t _window
    cdef public object _budgeted
    cdef public _Ordered _fillable
    cdef public _Ordered _with_free
    cdef public _Ordered _with_wave
    cdef public set _hollow
    cdef public object _top

    @cython.locals(n=object, node=NodeState, out=int, old=object, plain=dict)
    cpdef int report(
        self, object nodes, object name, object address, object capacity, object version,
        object free,
    ) except? -1
    cpdef list alive(self, object nodes)
    @cython.locals(with_room=_Ordered, fillable=_Ordered, n=NodeState, budget=object)
    cpdef refresh(self, RoomView view)
    @cython.locals(
        f=dict, pending=dict, load=dict, free=bint, wave=bint, positive=bint, part=bint,
        capped=bint, budgeted=bint, roomy=bint, window=Py_ssize_t, depth=double, q=double,
        used=double, cap=double, budget=object, spent=object, have=object, now=int,
        changed=int, copied=bint,
    )
    cpdef _renew(self, RoomView view, NodeState n)
    cpdef bint any_free(self)
    cpdef list with_free(self)
    cpdef list with_wave(self)
    cpdef object may_take(self)
    cpdef list fillable(self)
    @cython.locals(top=dict)
    cpdef dict top(self, list alive)

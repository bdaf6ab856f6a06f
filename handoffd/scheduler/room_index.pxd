# cython: language_level=3
# Types for room_index.py, compiled beside it (as demand.pxd, which holds one): the placement pass
# asks the index for its rooms through C fields and vtable calls. NodeState, Nodes and _Ordered stay
# Python classes (a dataclass watching its assignments, a dict and a set subclass), their bodies
# compiled; ``changed`` and ``reordered`` stay plain methods (Nodes holds them as values).

cimport cython


cdef class RoomIndex:
    cdef public set dirty
    cdef public dict room
    cdef public object _with_room
    cdef public dict _position
    cdef public object _alive
    cdef public object _window
    cdef public object _budgeted
    cdef public object _fillable
    cdef public object _with_free
    cdef public object _with_wave
    cdef public set _hollow
    cdef public object _top

    cpdef list alive(self, object nodes)
    @cython.locals(f=dict)
    cpdef refresh(self, object view)
    @cython.locals(wave=bint, positive=bint, hollow=bint, load=dict)
    cpdef _sort(self, object view, object n)
    cpdef bint any_free(self)
    cpdef list with_free(self)
    cpdef list with_wave(self)
    cpdef object may_take(self)
    cpdef list fillable(self)
    @cython.locals(top=dict)
    cpdef dict top(self, list alive)

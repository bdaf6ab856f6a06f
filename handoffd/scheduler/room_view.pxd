# cython: language_level=3
# Types for room_view.py, compiled beside it (as demand.pxd, its subclass): the room index's
# refresh reads the view's books and calls its room methods through C fields and vtable calls.

cimport cython


cdef class RoomView:
    cdef public object nodes
    cdef public object queue_seconds
    cdef public Py_ssize_t window
    cdef public dict work
    cdef public dict outstanding
    cdef public dict pending

    cpdef dict effective_free(self, str node)
    cpdef double budget(self, str node)
    @cython.locals(window=double, load=dict, q=double)
    cpdef bint may_take_part(self, object n)
    @cython.locals(f=dict, pending=dict)
    cpdef dict room_of(self, object n)
    @cython.locals(window=Py_ssize_t, load=dict)
    cpdef dict capped(self, object n, dict f)

# cython: language_level=3
# Types for durations.py, compiled beside it (the python-zeroconf way): the .py stays the pure-Python
# build (and the reference the tests hold the compiled one to); this file makes it a C class.

cimport cython


cdef class Durations:
    cdef public double alpha
    cdef public Py_ssize_t max_keys
    cdef public dict by_function
    cdef public dict by_shape
    cdef public list _function_order
    cdef public Py_ssize_t _function_head
    cdef public list _shape_order
    cdef public Py_ssize_t _shape_head

    cpdef list function_order(self)
    cpdef list shape_order(self)
    @cython.locals(order=list, head=Py_ssize_t)
    cpdef str _first_function(self)
    @cython.locals(order=list, head=Py_ssize_t)
    cpdef str _first_shape(self)

    cpdef void observe(self, object function, tuple shape, double seconds)
    cpdef void observe_task(self, object rec, double seconds)
    cpdef void observe_keys(self, str key, str shape, double seconds)
    @cython.locals(by_function=dict, alpha=double, have=bint, mean=double, i=Py_ssize_t, seconds=double)
    cpdef void observe_block(self, list keys, str shape, list secs)
    cpdef double estimate(self, object function, tuple shape)
    cpdef double estimate_task(self, object rec)
    cpdef double estimate_keys(self, str key, str shape)
    @cython.locals(seconds=double)
    cpdef double charge(self, object function, tuple shape, object cost, object capacity)
    cpdef double charge_task(self, object rec, object capacity)
    @cython.locals(seconds=double)
    cpdef double charge_keys(self, str key, str shape, object cost, object capacity)

@cython.locals(most=double, qty=double, cap=double)
cpdef double share(dict cost, dict capacity)

cdef dict _names
cdef Py_ssize_t _NAMES_LIMIT
cdef Py_ssize_t _COMPACT
@cython.locals(name=str)
cpdef str shape_key(tuple shape)
cpdef str function_key(object function, tuple shape)

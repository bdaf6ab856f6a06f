# cython: language_level=3
# Types for plain_graph.py, compiled beside it (the python-zeroconf way, as run.pxd): the .py stays
# the pure-Python build and the reference the tests hold the compiled one to.

cimport cython
from cpython.object cimport PyObject, PyTypeObject
from cpython.object cimport PyObject_GenericSetAttr as _store

cdef extern from "Python.h":
    PyTypeObject PyBaseObject_Type


# ``object.__new__(cls)`` as one C call: object's own ``tp_new`` (its checks, the allocation, the
# instance's value slots made ready), without the Python call through ``object.__new__``.
cdef inline object _make(type cls):
    return PyBaseObject_Type.tp_new(cls, <PyObject*>(), NULL)


@cython.locals(i=Py_ssize_t, every=Py_ssize_t, specs=list, index=dict, shapes=dict)
cpdef object wire_specs(object tasks, object payloads)
@cython.locals(n=Py_ssize_t, i=Py_ssize_t, at=Py_ssize_t, every=Py_ssize_t, specs=list, kind=object, priority=object, some_kind=bint, some_priority=bint)
cpdef list column_specs(object ids, object deps, object costs, object cost_of, object kinds, object inclusion, object priorities, object payloads, object heads=*, object head_of=*)
@cython.locals(n=Py_ssize_t, i=Py_ssize_t, every=Py_ssize_t, ids=list, deps=list, effective=dict)
cpdef object links(object specs, object index, bint check_cycle)
@cython.locals(n=Py_ssize_t, i=Py_ssize_t, every=Py_ssize_t, effective=dict, consumers=dict, rows=list, needs=list, linked=bint, acyclic=bint, own=dict)
cpdef object column_links(object ids, object deps, object index, bint check_cycle)
cpdef tuple free_links(object ids, dict effective=*)
@cython.locals(n=Py_ssize_t, reached=Py_ssize_t, left=Py_ssize_t, queue=list)
cpdef bint _acyclic(list rows, list needs)
@cython.locals(out=list)
cpdef list sizes(object specs)
@cython.locals(at=Py_ssize_t, i=Py_ssize_t, last=Py_ssize_t, every=Py_ssize_t, position=list, ordered=list)
cpdef object places(object ranked, Py_ssize_t n, list priorities, list upward_rank)
@cython.locals(at=Py_ssize_t, task=Py_ssize_t)
cpdef bint _tied_in_index_order(object ranked, Py_ssize_t n, list priorities, list upward_rank)

# cython: language_level=3
# Types for plain_graph.py, compiled beside it (the python-zeroconf way, as run.pxd): the .py stays
# the pure-Python build and the reference the tests hold the compiled one to.

cimport cython
from cpython.object cimport PyObject, PyTypeObject
from cpython.object cimport PyObject_GenericSetAttr as _store
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy

cdef extern from "Python.h":
    PyTypeObject PyBaseObject_Type


# ``object.__new__(cls)`` as one C call: object's own ``tp_new`` (its checks, the allocation, the
# instance's value slots made ready), without the Python call through ``object.__new__``.
cdef inline object _make(type cls):
    return PyBaseObject_Type.tp_new(cls, <PyObject*>(), NULL)


# ``head + tail`` of two bytes as one allocation and two copies (the tail a frame of an upload, cut
# as bytes: ``protocol.frames_cut``); anything else as ``+`` joins it.
cdef inline object _joined(object head, object tail):
    cdef Py_ssize_t size, more
    cdef bytes out
    if type(head) is not bytes or type(tail) is not bytes:
        return head + tail
    size = PyBytes_GET_SIZE(head)
    more = PyBytes_GET_SIZE(tail)
    out = PyBytes_FromStringAndSize(NULL, size + more)
    memcpy(PyBytes_AS_STRING(out), PyBytes_AS_STRING(head), size)
    memcpy(PyBytes_AS_STRING(out) + size, PyBytes_AS_STRING(tail), more)
    return out


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

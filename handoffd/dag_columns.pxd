# cython: language_level=3
# Types for dag_columns.py, compiled beside it (the python-zeroconf way, as scheduler/plain_graph.pxd):
# the .py stays the pure-Python build and the reference the tests hold the compiled one to. The
# users' Functions stay Python objects: their attributes are read as Python reads them, the loop
# around them is C.

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.string cimport memcpy

cdef bytes _OPEN
cdef bytes _CLOSE


# ``_one_int_tail``'s bytes written in place: one allocation, no Struct call a function.
cdef inline object _int_tail(list extra):
    cdef int overflow = 0
    cdef long long v
    cdef unsigned int u
    cdef Py_ssize_t a, c
    cdef char* out
    if len(extra) != 1 or not _OPEN:
        return None
    one = extra[0]
    if type(one) is not int:
        return None
    v = PyLong_AsLongLongAndOverflow(one, &overflow)
    if overflow or v < -0x80000000 or v > 0x7FFFFFFF:
        return None
    a = len(_OPEN)
    c = len(_CLOSE)
    tail = PyBytes_FromStringAndSize(NULL, a + 4 + c)
    out = PyBytes_AS_STRING(tail)
    memcpy(out, PyBytes_AS_STRING(_OPEN), a)
    u = <unsigned int>(<int>v)
    out[a] = <char>(u & 0xFF)
    out[a + 1] = <char>((u >> 8) & 0xFF)
    out[a + 2] = <char>((u >> 16) & 0xFF)
    out[a + 3] = <char>((u >> 24) & 0xFF)
    memcpy(out + a + 4, PyBytes_AS_STRING(_CLOSE), c)
    return tail


cdef inline object _cpu(dict cost):
    return cost.get("cpu")


@cython.locals(ids=list, counts=list, deps=list, kinds=dict, inclusion=list, priorities=list, payloads=list, head_of=list, heads=list, head_at=dict, code_at=dict, big=dict, linked=bint, ranked=bint, shared=bint, n=Py_ssize_t)
cpdef tuple _build(dict functions, object packages, object priority)
@cython.locals(position=dict, consumers=list, indegree=list, order=list, i=Py_ssize_t, j=object, left=Py_ssize_t)
cpdef list _kahn(dict functions, list ids, list counts)

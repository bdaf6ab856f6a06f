# cython: language_level=3
# Types for _heads.py, compiled beside it (as _kept.pxd): the payloads' loop with C indices, each
# payload's start and close compared in place (Cython's bytes tail match: one memcmp each), its
# int's bytes read and written as C chars.

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy

cdef bytes _OPEN, _CLOSE
cdef Py_ssize_t _OPEN_SIZE, _CLOSE_SIZE


@cython.locals(
    n=Py_ssize_t, size=Py_ssize_t, cut=Py_ssize_t, at=Py_ssize_t, i=Py_ssize_t,
    one=object, item=object, p=bytes, start=bytes, ints=bytearray,
)
cpdef object headed(list payloads)


# ``_call_payload``'s bytes written in place: one allocation, three copies, no join's tuple.
cdef inline bytes _payload(bytes start, bytes ints, Py_ssize_t at):
    cdef Py_ssize_t size = PyBytes_GET_SIZE(start)
    cdef Py_ssize_t close = PyBytes_GET_SIZE(_CLOSE)
    cdef char* to
    out = PyBytes_FromStringAndSize(NULL, size + 4 + close)
    to = PyBytes_AS_STRING(out)
    memcpy(to, PyBytes_AS_STRING(start), size)
    memcpy(to + size, PyBytes_AS_STRING(ints) + at, 4)
    memcpy(to + size + 4, PyBytes_AS_STRING(_CLOSE), close)
    return out


@cython.locals(out=list, at=Py_ssize_t)
cpdef list calls(bytes start, bytes ints)

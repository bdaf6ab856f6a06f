# cython: language_level=3
# Types for _heads.py, compiled beside it (as _kept.pxd): the payloads' loop with C indices, each
# payload's start and close compared in place (Cython's bytes tail match: one memcmp each), its
# int's bytes read and written as C chars.

cimport cython

cdef bytes _OPEN, _CLOSE
cdef Py_ssize_t _OPEN_SIZE, _CLOSE_SIZE


@cython.locals(
    n=Py_ssize_t, size=Py_ssize_t, cut=Py_ssize_t, at=Py_ssize_t, i=Py_ssize_t,
    one=object, item=object, p=bytes, start=bytes, ints=bytearray,
)
cpdef object headed(list payloads)

# cython: language_level=3
# Types for frames_cut.py, compiled beside it (as report_read.pxd): the frames cut with C offsets,
# a small one copied straight from the upload's bytes.

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize


# ``bytes(flat[at:at + size])`` as one C allocation from the buffer's bytes (``cut`` checked that
# the frame lies within them; an empty frame is the empty bytes).
cdef inline bytes _copy(const unsigned char[::1] flat, Py_ssize_t at, Py_ssize_t size):
    if size <= 0:
        return b""
    return PyBytes_FromStringAndSize(<const char*>&flat[at], size)


@cython.locals(i=Py_ssize_t, size=Py_ssize_t, end=Py_ssize_t, length=Py_ssize_t, frames=list, flat="const unsigned char[::1]")
cpdef list cut(object data, Py_ssize_t at, object sizes)
@cython.locals(i=Py_ssize_t, size="long long", out="long long", limit="long long", over=bint, every="const long long[::1]")
cpdef long long total(object sizes) except? -2
@cython.locals(i=Py_ssize_t, size="long long", out="long long", every="const long long[::1]")
cpdef long long longest(object sizes) except? -1

# cython: language_level=3
# Types for local_frames.py, compiled beside it (as protocol/frames_cut.pxd): a two-frame message's
# header read or written in place (big-endian, as struct's "!IQQ"), each frame one copy.

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memcpy



cdef inline void _put(unsigned char* at, unsigned long long value, int width) noexcept:
    cdef int i
    for i in range(width - 1, -1, -1):
        at[i] = value & 0xFF
        value >>= 8


cdef inline unsigned long long _get(const unsigned char* at, int width) noexcept:
    cdef unsigned long long value = 0
    cdef int i
    for i in range(width):
        value = (value << 8) | at[i]
    return value


# ``_joined_of``: the header and both frames written into one new bytes.
cdef inline bytes _joined(bytes first, bytes second):
    cdef Py_ssize_t size = len(first), more = len(second)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 20 + size + more)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    _put(p, 2, 4)
    _put(p + 4, size, 8)
    _put(p + 12, more, 8)
    memcpy(p + 20, PyBytes_AS_STRING(first), size)
    memcpy(p + 20 + size, PyBytes_AS_STRING(second), more)
    return out


# ``_cut_of``: the header read from the buffer's bytes, each frame copied into a bytes of its own
# (``whole`` checked ``n`` >= 20; the sizes are checked against ``n`` before a copy, and ``n``
# against the buffer).
cdef inline list _cut(object data, Py_ssize_t n):
    cdef Py_buffer view
    cdef const unsigned char* p
    cdef unsigned long long size, more
    cdef list out = None
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if view.len < n:
            raise ValueError(f"{n} bytes asked of a buffer of {view.len}")
        p = <const unsigned char*>view.buf
        size = _get(p + 4, 8)
        more = _get(p + 12, 8)
        if _get(p, 4) == 2 and size <= <unsigned long long>n and more <= <unsigned long long>n and 20 + size + more == <unsigned long long>n:
            out = [
                PyBytes_FromStringAndSize(<const char*>p + 20, <Py_ssize_t>size),
                PyBytes_FromStringAndSize(<const char*>p + 20 + size, <Py_ssize_t>more),
            ]
    finally:
        PyBuffer_Release(&view)
    return out


@cython.locals(first=object, second=object)
cpdef object small(object frames)
cpdef object whole(object data, Py_ssize_t n)

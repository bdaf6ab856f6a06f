# cython: language_level=3
# Types for repeats.py, compiled beside it (as report_read.pxd): a repeated request's ids read from
# its bytes with C offsets, its message's slots filled in a C loop, its reply's bytes joined in C.
# The messages, envelopes and counters stay Python objects; final classes (no virtual dispatch).

cimport cython

cdef object _new, _tuple_new
cdef dict _UINT


@cython.locals(first=Py_ssize_t, size=object)
cdef tuple _uint(bytes data, Py_ssize_t at)
@cython.locals(first=Py_ssize_t, size=Py_ssize_t, end=Py_ssize_t)
cdef tuple _str(bytes data, Py_ssize_t at)
cdef Py_ssize_t _head_size(Py_ssize_t first)


@cython.final
cdef class Repeats:
    cdef public int type_id
    cdef public Py_ssize_t hits
    cdef public Py_ssize_t kept
    cdef list _names
    cdef object _cls
    cdef tuple _setters
    cdef object _decoded
    cdef object _pack
    cdef bytes _prefix
    cdef bytes _suffix
    cdef tuple _rest
    cdef object _envelope
    cdef bint _fresh
    cdef Py_ssize_t _backoff
    cdef Py_ssize_t _skip

    @cython.locals(prefix=bytes, suffix=bytes, at=Py_ssize_t, n=Py_ssize_t, first=Py_ssize_t,
                   end=Py_ssize_t, got=tuple, run=tuple, setters=tuple, rest=tuple, i=Py_ssize_t)
    cpdef tuple read(self, bytes head)
    @cython.locals(n=Py_ssize_t, i=Py_ssize_t, head=object, hit=tuple)
    cpdef object decoded(self, object frames, object limits, object stats)
    @cython.locals(size=Py_ssize_t, at=Py_ssize_t, got=tuple, run=tuple, front=bytes, pack=object)
    cpdef learn(self, bytes head, object envelope, tuple values, object msg)


@cython.final
cdef class ReplyRepeats:
    cdef public object cls
    cdef public int type_id
    cdef public Py_ssize_t hits
    cdef object _rest_of
    cdef object _stats
    cdef tuple _key
    cdef bytes _prefix
    cdef bytes _suffix
    cdef object _pack

    @cython.locals(key=tuple, ids=bytes)
    cpdef object write(self, object msg, object envelope)
    @cython.locals(ids=bytes, at=Py_ssize_t)
    cpdef learn(self, object msg, object envelope, object body)

# cython: language_level=3
# Types for log_pack.py, compiled beside it (as report_read.pxd): each column a typed buffer (an
# array seen through a typed memoryview), a number put as its C value, a column's put a direct C
# call (final classes: no virtual dispatch). LogColumns is cimported by scheduler/owner_queries.pxd
# (the records' fields handed over as C values).

cimport cython
from libc.string cimport memcpy


cdef extern from "Python.h":
    # (NULL unchecked: ``_put_str`` tells a string msgpack cannot pack from any other error, and
    # no try block a string, whose saved exception state cost more than the copy)
    const char* _utf8 "PyUnicode_AsUTF8AndSize"(object unicode, Py_ssize_t* size)
    int PyErr_ExceptionMatches(object exc)
    void PyErr_Clear()


cdef Py_ssize_t _ROW_WIDTH, _ATTEMPT_WIDTH, _START, _KEEP
cdef bint _SWAP
cdef object _NOTHING, _packer, _packb, _array_header
cdef bytes _FIVE


@cython.locals(result=object)
cdef long long _int(object value) except? -1
@cython.locals(result=bytes)
cdef bytes _wire(object data, Py_ssize_t count)


@cython.final
cdef class _Ints:
    cdef Py_ssize_t count
    cdef Py_ssize_t capacity
    cdef bint same
    cdef object data
    cdef long long[::1] view

    cdef void _allocate(self, Py_ssize_t capacity) except *
    cdef void _grow(self) except *
    cdef void reset(self) except *
    @cython.locals(n=Py_ssize_t)
    cdef int put(self, long long value) except -1
    cdef bytes packed(self)


@cython.final
cdef class _Floats:
    cdef Py_ssize_t count
    cdef Py_ssize_t capacity
    cdef bint same
    cdef object data
    cdef double[::1] view

    cdef void _allocate(self, Py_ssize_t capacity) except *
    cdef void _grow(self) except *
    cdef void reset(self) except *
    @cython.locals(n=Py_ssize_t)
    cdef int put(self, double value) except -1
    cdef bytes packed(self)


@cython.final
cdef class _Keyed:
    cdef str kind
    cdef dict table
    cdef Py_ssize_t count
    cdef Py_ssize_t filled
    cdef Py_ssize_t capacity
    cdef object last
    cdef Py_ssize_t last_at
    cdef object narrow
    cdef object wide
    cdef unsigned char[::1] narrow_view
    cdef int[::1] wide_view

    cdef void _allocate(self, Py_ssize_t capacity) except *
    cdef void _grow(self) except *
    cdef void reset(self) except *
    @cython.locals(last=object, at=Py_ssize_t, kind=str, key=object, item=object, table=dict, found=object)
    cdef bint put(self, object value, bint sort) except -1
    @cython.locals(n=Py_ssize_t, count=Py_ssize_t, at=Py_ssize_t)
    cdef void _fill(self) except *
    @cython.locals(values=list)
    cdef list packed(self)


@cython.final
cdef class _Strs:
    cdef Py_ssize_t count
    cdef Py_ssize_t size
    cdef Py_ssize_t capacity
    cdef object data
    cdef unsigned char[::1] view

    cdef void _allocate(self, Py_ssize_t capacity) except *
    cdef void _grow(self) except *
    cdef void reset(self) except *
    @cython.locals(result=bint)
    cdef bint put(self, str value) except -1
    cdef object packed(self)


# ``log_pack._put_str_py`` in C: the string's UTF-8 (CPython's, kept with an ASCII string: no
# copy made) after the header msgpack's Packer gives a str (use_bin_type: str8 from 32 bytes).
cdef inline bint _put_str(_Strs strs, str value) except -1:
    cdef Py_ssize_t size, at
    cdef const char* data
    cdef unsigned char* out
    data = _utf8(value, &size)
    if data == NULL:
        if PyErr_ExceptionMatches(UnicodeEncodeError):
            PyErr_Clear()
            return False
        return -1
    if size > 0xFFFFFFFF:
        return False
    at = strs.size
    while strs.capacity < at + size + 5:
        strs._grow()
    out = &strs.view[0]
    if size < 32:
        out[at] = 0xA0 | size
        at += 1
    elif size < 256:
        out[at] = 0xD9
        out[at + 1] = size
        at += 2
    elif size < 65536:
        out[at] = 0xDA
        out[at + 1] = size >> 8
        out[at + 2] = size & 0xFF
        at += 3
    else:
        out[at] = 0xDB
        out[at + 1] = (size >> 24) & 0xFF
        out[at + 2] = (size >> 16) & 0xFF
        out[at + 3] = (size >> 8) & 0xFF
        out[at + 4] = size & 0xFF
        at += 5
    memcpy(out + at, data, size)
    strs.size = at + size
    strs.count += 1
    return True


# ``log_pack._keyed_py`` in C: an entry the very object put before only counted, no call (the rule
# in a batch: its tasks share their strings and their locations' tuple). (An equal string or
# tuple of strings taken here too, a success table's own copy at every other W1 task, cost more
# in the compare added to every put than it saved in ``put``'s: measured, +35 a W1 task.)
cdef inline bint _keyed(_Keyed column, object value, bint sort) except -1:
    if value is column.last:
        column.count += 1
        return True
    return column.put(value, sort)


# ``_Ints.put`` and ``_Floats.put`` inline (a call a number field was ~35 instructions, the put
# itself ~10): the same buffer writes and checks.
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.initializedcheck(False)
cdef inline int _put_int(_Ints column, long long value) except -1:
    cdef Py_ssize_t n = column.count
    if n == column.capacity:
        column._grow()
    column.view[n] = value
    if column.same and value != column.view[0]:
        column.same = False
    column.count = n + 1
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.initializedcheck(False)
cdef inline int _put_float(_Floats column, double value) except -1:
    cdef Py_ssize_t n = column.count
    if n == column.capacity:
        column._grow()
    column.view[n] = value
    if column.same and value != column.view[0]:  # (NaN: never the same, as a compare)
        column.same = False
    column.count = n + 1
    return 0


@cython.final
cdef class LogColumns:
    cdef _Strs task_ids
    cdef _Keyed state
    cdef _Ints attempt
    cdef _Keyed node
    cdef _Ints size
    cdef _Keyed locations
    cdef _Ints failures
    cdef _Ints losses
    cdef _Ints completions
    cdef _Ints frame
    cdef _Ints counts
    cdef Py_ssize_t total
    cdef _Ints a_attempt
    cdef _Keyed a_node
    cdef _Keyed a_state
    cdef _Floats a_dispatched
    cdef _Floats a_started
    cdef _Floats a_ended
    cdef _Ints a_pid
    cdef _Ints a_bytes_in
    cdef _Ints a_bytes_out
    cdef _Keyed a_exc_type
    cdef _Keyed a_message
    cdef _Keyed a_traceback
    cdef _Keyed a_cause

    @cython.locals(ints=_Ints, floats=_Floats, keyed=_Keyed)
    cpdef reset(self)
    cpdef bint put_row(self, object row) except -1
    cpdef bint put_record(
        self, object task_id, object state, long long attempt, object node, long long size,
        object locations, long long failures, long long losses, long long completions,
        long long frame, list attempts
    ) except -1
    @cython.locals(attempt_row=object, row=tuple)
    cdef bint _put(
        self, object task_id, object state, long long attempt, object node, long long size,
        object locations, long long failures, long long losses, long long completions,
        long long frame, object attempts, bint sort
    ) except -1
    @cython.locals(count=Py_ssize_t, packed=bytes, rest=bytes)
    cpdef object packed(self)


@cython.locals(columns=LogColumns, row=object)
cpdef object pack_columns(object rows)

# cython: language_level=3
# Types for log_pack.py, compiled beside it (as report_read.pxd): each column a typed buffer (an
# array seen through a typed memoryview), a number put as its C value, a column's put a direct C
# call (final classes: no virtual dispatch). LogColumns is cimported by scheduler/owner_queries.pxd
# (the records' fields handed over as C values).

cimport cython


cdef Py_ssize_t _ROW_WIDTH, _ATTEMPT_WIDTH, _START, _KEEP
cdef bint _SWAP
cdef object _NOTHING


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
    @cython.locals(last=object, at=Py_ssize_t, kind=str, key=object, item=object, table=dict, found=object, n=Py_ssize_t)
    cdef bint put(self, object value, bint sort) except -1
    @cython.locals(values=list)
    cdef list packed(self)


@cython.final
cdef class LogColumns:
    cdef list task_ids
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
    @cython.locals(count=Py_ssize_t, packed=bytes)
    cpdef object packed(self)


@cython.locals(columns=LogColumns, row=object)
cpdef object pack_columns(object rows)

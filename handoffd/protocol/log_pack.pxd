# cython: language_level=3
# Types for log_pack.py, compiled beside it (as report_read.pxd): one loop over a log batch's rows,
# each field put in its column through a C call and the column's C fields.

cimport cython


cdef class _Column:
    cdef str kind
    cdef bint numeric
    cdef bint same
    cdef list entries
    cdef dict table
    cdef object last
    cdef object last_at

    @cython.locals(entries=list, last=object, kind=str, table=dict, key=object, at=object, item=object)
    cdef bint put(self, object value) except -1
    @cython.locals(entries=list, values=list)
    cdef object packed(self)


cdef class _Columns:
    cdef list columns
    cdef Py_ssize_t width

    @cython.locals(columns=list, j=Py_ssize_t, column=_Column)
    cdef bint put(self, object row, Py_ssize_t start) except -1
    @cython.locals(column=_Column)
    cdef list packed(self)


@cython.locals(count=Py_ssize_t, task_ids=list, counts=list, tasks=_Columns, attempts=_Columns, total=Py_ssize_t, row=object, tried=object, attempt=object, same=bint, packed=bytes)
cpdef object pack_columns(object rows)

# cython: language_level=3
# Types for history_kept.py, compiled beside it (as history.pxd): a released run's records are
# read as the C class they are (``run.TaskRecord``), each field a struct read, not a generic
# attribute lookup.

cimport cython

from handoffd.scheduler cimport history
from handoffd.scheduler.run cimport TaskRecord


cpdef list columns()
@cython.locals(rec=TaskRecord)
cpdef tuple keep(dict tasks, dict deps)
@cython.locals(attempts=list)
cdef tuple _one(TaskRecord rec, dict deps)
@cython.locals(k=Py_ssize_t, end=Py_ssize_t, m=Py_ssize_t, i=Py_ssize_t, j=Py_ssize_t, n=Py_ssize_t, each=Py_ssize_t, total=Py_ssize_t, kept_before=Py_ssize_t, rec=TaskRecord, ids=list, states=list, nodes=list, needs=list, rows=list, flat=list, counts=list, part=list, attempts=list, moves=list)
cpdef Py_ssize_t keep_next(list records, Py_ssize_t at, Py_ssize_t limit, dict deps, list cols)
@cython.locals(part=list, whole=list, total=Py_ssize_t, j=Py_ssize_t)
cpdef tuple _joined(list parts)
cpdef tuple sealed(list cols)
cpdef Py_ssize_t kept_count(tuple kept)
cpdef tuple _rows_of(tuple item)
@cython.locals(out=list, i=Py_ssize_t, n=Py_ssize_t, each=Py_ssize_t, at=Py_ssize_t, end=Py_ssize_t, ids=tuple, states=tuple, nodes=tuple, needs=tuple, rows=tuple, flat=tuple, counts=tuple, steps=object)
cpdef tuple thaw(tuple kept, double wall_offset, double since=*, bint brief=*)

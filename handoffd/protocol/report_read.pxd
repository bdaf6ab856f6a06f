# cython: language_level=3
# Types for report_read.py, compiled beside it (as scheduler/run.pxd): the loops over a report
# message's values with C indices, the slices of the packed frame taken straight from its bytes.

cimport cython


@cython.locals(n=Py_ssize_t, wide=Py_ssize_t)
cpdef bint _read_at_once(object table, object msg)
@cython.locals(numbers=list, n=Py_ssize_t, sizes=list, blob=object)
cpdef tuple read(object msg, list frames)
@cython.locals(i=Py_ssize_t, number=Py_ssize_t)
cpdef bint _in_order(list numbers)
@cython.locals(out=list, at=Py_ssize_t, size=Py_ssize_t)
cpdef list _slices(bytes blob, list sizes)

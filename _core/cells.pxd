# cython: language_level=3
# The map readers of cells.pyx that sched.pyx's kernels share (cimported).

cdef list _kinds(tuple groups)
cdef tuple _dims(tuple groups)
cdef double _quantity(object value, str what, Py_ssize_t i, object kind) except? -1.0
cdef int _fill(object maps, dict index, Py_ssize_t n_dims, double* out, str what, bint clamp) except -1

# cython: language_level=3
# The item readers of ranking.pyx that sched.pyx shares (cimported: one wording for a bad item in
# every kernel).

cdef object _integer(object value, str name, Py_ssize_t i)
cdef double _number(object value, str name, Py_ssize_t i, bint negative) except? -1.0

# cython: language_level=3
# Types for run_snapshot.py, compiled beside it (as run.pxd): a takeover's rebuild of a big run
# is one compiled loop over its tasks. (No cimport of run.pxd: run imports this module.)

cimport cython


cpdef dict snapshot(object run, bint history=*)
@cython.locals(i=Py_ssize_t)
cpdef object restore(object cls, object data, object order=*)

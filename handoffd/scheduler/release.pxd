# cython: language_level=3
# Types for release.py, compiled beside it (as lost.pxd): a run's release reads the run and calls
# the scheduler's compiled parts through C fields.

cimport cython

from handoffd.scheduler.cluster_view cimport ClusterView
from handoffd.scheduler.outbox cimport Outbox
from handoffd.scheduler.ready cimport ReadyQueue
from handoffd.scheduler.run cimport RunState


cdef class Releases:
    cdef public object _owned
    cdef public ClusterView _view
    cdef public ReadyQueue _ready
    cdef public Outbox _out
    cdef public Py_ssize_t limit
    cdef public Py_ssize_t whole

    @cython.locals(run=RunState, live=list)
    cpdef released(self, object ev)
    cpdef next_slice(self, object run_id)

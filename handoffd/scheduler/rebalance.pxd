# cython: language_level=3
# Types for rebalance.py, compiled beside it (as demand.pxd): every dispatch beyond a node's free
# resources (``sent``) and every attempt leaving a node while some are queued (``came_back``) pass
# through here, and a task of unknown duration (every task of a run of distinct functions) is queued.

cimport cython

from handoffd.scheduler.cluster_view cimport ClusterView
from handoffd.scheduler.durations cimport Durations
from handoffd.scheduler.run cimport RunState, TaskRecord


cdef class Rebalance:
    cdef public ClusterView _view
    cdef public object _out
    cdef public object _run_of
    cdef public object _give_back
    cdef public object _held
    cdef public dict queued
    cdef public dict asked
    cdef public long long moved

    @cython.locals(seconds=double, keys=dict)
    cpdef sent(self, RunState run, TaskRecord rec, str node)
    @cython.locals(
        group_of=dict, durations=Durations, took=double, keys=dict, run_id=str, rec=TaskRecord,
        task_id=str, i=Py_ssize_t, short=double
    )
    cpdef sent_all(self, RunState run, list recs, str node, list seconds=*)
    @cython.locals(keys=dict)
    cpdef came_back(self, str node, tuple key)

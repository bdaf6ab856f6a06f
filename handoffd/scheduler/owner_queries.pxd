# cython: language_level=3
# Types for owner_queries.py (the base of OwnerScheduler, compiled with owner.pxd): the parts the
# scheduler composes, as C fields.

cimport cython

from handoffd.protocol.log_pack cimport LogColumns
from handoffd.scheduler.cluster_view cimport ClusterView
from handoffd.scheduler.lost cimport LostMessages
from handoffd.scheduler.run cimport MoveListener, RunState, TaskRecord


cdef class OwnerQueries(MoveListener):
    cdef public ClusterView _view
    cdef public object _owned
    cdef public dict _live
    cdef public LostMessages _lost
    cdef public LogColumns _log_columns

    @cython.locals(
        run=RunState, rec=TaskRecord, rows=list, values=list, tasks=dict, frame=Py_ssize_t
    )
    cpdef delta_rows(self, str run_id, object task_ids)
    @cython.locals(
        run=RunState, rec=TaskRecord, values=list, tasks=dict, frame=Py_ssize_t, columns=LogColumns
    )
    cpdef delta_columns(self, str run_id, object task_ids)

# cython: language_level=3
# Types for lost.py, compiled beside it (as rebalance.pxd): every task that goes out to a node or
# comes back tells the tracker (``went_out``/``came_back``, ``sent`` a dispatch), so the owner
# calls them as C methods, not Python method calls.

cimport cython

from handoffd.scheduler.run cimport TaskRecord


cdef class LostMessages:
    cdef public object probe_interval
    cdef public object ack_timeout
    cdef public object _view
    cdef public object _out
    cdef public object _run_of
    cdef public object _count_loss
    cdef public object _adopt
    cdef public set _ack_timers
    cdef public dict _out_since
    cdef public bint _probe_timer
    cdef public double _probe_due
    cdef public dict _probes
    cdef public long long _probe_seq

    cpdef went_out(self, str run_id, str task_id, double now)
    @cython.locals(out_since=dict, rec=TaskRecord)
    cpdef went_out_all(self, str run_id, list recs, double now)
    cpdef came_back(self, str run_id, str task_id)
    @cython.locals(out_since=dict, rec=TaskRecord)
    cpdef came_back_all(self, str run_id, list recs)
    cpdef sent(self, str node)

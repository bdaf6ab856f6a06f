# cython: language_level=3
# Types for lost.py, compiled beside it (as rebalance.pxd): every dispatch tells the watch what
# went out (``went_out``/``went_out_all``, ``sent``), so the owner calls them as C methods, not
# Python method calls; a task's return tells it nothing (its record's state is read).

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
    cdef public list _sent
    cdef public bint _probe_timer
    cdef public double _probe_due
    cdef public dict _probes
    cdef public long long _probe_seq

    cpdef went_out(self, str run_id, str task_id, double now)
    cpdef went_out_all(self, str run_id, tuple task_ids, double now)
    @cython.locals(sent=list, runs=dict, seen_of=dict, seen=set, found=list, out=dict, kept=list, task_ids=tuple, e=Py_ssize_t, i=Py_ssize_t, since=double)
    cpdef dict out_since(self)
    cpdef sent(self, str node)

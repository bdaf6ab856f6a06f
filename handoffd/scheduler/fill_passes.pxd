# cython: language_level=3
# Types for fill_passes.py, compiled beside it (as cluster_view.pxd, its subclass): the fill passes
# walk the ready queue and read task records, runs and the books through C fields.

cimport cython

from handoffd.scheduler.demand cimport Demand
from handoffd.scheduler.durations cimport Durations
from handoffd.scheduler.ready cimport ReadyQueue
from handoffd.scheduler.room_index cimport NodeState as CNodeState
from handoffd.scheduler.run cimport RunState, TaskRecord


@cython.locals(load=dict, eps=double, q=double)
cpdef bint _wave_open(CNodeState n, dict outstanding)


@cython.locals(
    eps=double, pin=object, items=tuple, n=CNodeState, load=dict, capacity=dict, fits=bint,
    q=double, cap=double, room=double, shape=tuple
)
cpdef bint _some_wave_fits(list nodes, dict outstanding, object shapes)


@cython.locals(out=list, rec=TaskRecord, seconds=double)
cpdef list _seconds(Durations durations, list recs)


cdef class FillPasses(Demand):
    cdef public bint indexed
    cdef public bint blocks
    cdef public object _window_fill
    cdef public object _below

    @cython.locals(timed=bint, window=Py_ssize_t)
    cpdef _fill_windows(
        self, list alive, ReadyQueue ready, object dispatch, bint low_water, object block=*
    )
    @cython.locals(window=double)
    cpdef bint _some_window_opens(self, set names, bint low_water)
    @cython.locals(nodes=list, outstanding=dict, n=CNodeState)
    cpdef _fill_waves(self, list alive, ReadyQueue ready, object dispatch, object block=*)
    @cython.locals(
        run=RunState, rec=TaskRecord, misses=Py_ssize_t, missed=set, index=dict,
        seconds=double, chosen=Py_ssize_t, item=tuple, recs=list, to=Py_ssize_t, of=RunState,
        more=Py_ssize_t, like=list, took=Py_ssize_t, secs=list, charged=list,
    )
    cpdef _walk(
        self, object fill, list nodes, ReadyQueue ready, object dispatch, bint timed,
        object block=*
    )

# cython: language_level=3
# Types for cluster_view.py, compiled beside it (as demand.pxd, its base): the placement pass walks
# the ready queue and reads task records, runs and the books through C fields.

cimport cython

from handoffd.scheduler.fill_passes cimport FillPasses
from handoffd.scheduler.ready cimport ReadyQueue
from handoffd.scheduler.room_index cimport NodeState as CNodeState
from handoffd.scheduler.run cimport RunState, TaskRecord


cpdef bint _none_positive(dict total)
cpdef bint any_free(dict free)


cdef class ClusterView(FillPasses):
    cdef public object backend
    cdef public object _core
    cdef public bint short
    cdef public bint saturated
    cdef public long long passes
    cdef public object _fits
    cdef public object _prefer
    cdef public object _place_kernel
    cdef public tuple _shape_items
    cdef public dict _shape_dict

    cpdef bint could_take(self, object pin, object cost)
    cpdef bint _may_fill(self)
    cpdef bint _fill_due(self, object n)
    cpdef bint _below_low_water(self, object n)
    @cython.locals(f=dict, load=dict)
    cpdef dict _room(self, object n)
    @cython.locals(f=dict, load=dict)
    cpdef dict _wave_room(self, object n)
    @cython.locals(f=dict, wave=dict)
    cpdef bint room_opened(self, str node, ReadyQueue ready)
    @cython.locals(
        free=dict, room=dict, most=dict, window=Py_ssize_t, anything=bint, indexed=bint
    )
    cpdef place(self, ReadyQueue ready, object dispatch, object block=*)
    cpdef bint _some_shape_fits(self, ReadyQueue ready, dict free, dict most)
    cpdef dict _shape_cost(self, tuple items)
    @cython.locals(
        run=RunState, rec=TaskRecord, total=dict, batch=list, leaders=dict, missed=set,
        misses=Py_ssize_t, exhausted=bint, weightless=bint, summed=double, sent=Py_ssize_t,
        chosen=list, item=tuple,
    )
    cpdef Py_ssize_t _place_free(self, dict free, dict most, ReadyQueue ready, object dispatch)
    @cython.locals(
        demands=list, chosen=list, names=list, frees=list, index=dict, capacities=list,
        todo=list, pins=list, prefs=list, picks=list, need=dict,
        i=Py_ssize_t, j=Py_ssize_t, n=Py_ssize_t, at=Py_ssize_t, lead=Py_ssize_t,
    )
    cpdef object _place_short(self, dict free, list batch)
    @cython.locals(
        run=RunState, need=dict, names=list, frees=list, capacities=list, picks=list,
        n=Py_ssize_t, at=Py_ssize_t, before=Py_ssize_t, lead=Py_ssize_t,
    )
    cpdef object _place_one(self, dict free, tuple entry)
    @cython.locals(kinds=set, least=dict, room=dict, names=list, frees=list)
    cpdef tuple _candidates(self, dict free, list demands)

# cython: language_level=3
# Types for demand.py, compiled beside it (as run.pxd): the books every dispatch, answer and task
# move updates, kept in C fields and read through the task records' C fields.

cimport cython

from handoffd.scheduler.durations cimport Durations
from handoffd.scheduler.room_index cimport NodeState, RoomIndex
from handoffd.scheduler.room_view cimport RoomView
from handoffd.scheduler.run cimport TaskRecord


@cython.locals(left=double, qty=double, eps=double, old=object)
cpdef add_into(dict total, dict cost, int sign)


cdef class Demand(RoomView):
    cdef public Durations durations
    cdef public RoomIndex _rooms
    cdef public set _dirty_rooms
    cdef public dict unacked

    cpdef bint alive(self, str name)
    @cython.locals(load=dict, capacity=dict, cost=dict, n=NodeState)
    cpdef went_out(self, str node, TaskRecord rec)
    @cython.locals(load=dict, left=double)
    cpdef came_back(self, str node, TaskRecord rec)
    @cython.locals(pending=dict, sent=dict, n=NodeState)
    cpdef sent(self, str node, tuple key, dict cost, double now)
    @cython.locals(pending=dict, sent=object)
    cpdef object answered(self, str node, tuple key)

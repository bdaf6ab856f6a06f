# cython: language_level=3
# Types for demand.py, compiled beside it (as run.pxd): the books every dispatch, answer and task
# move updates, kept in C fields and read through the task records' C fields.

cimport cython

from handoffd.scheduler.durations cimport Durations, share
from handoffd.scheduler.room_index cimport NodeState, RoomIndex
from handoffd.scheduler.room_view cimport RoomView
from handoffd.scheduler.run cimport TaskRecord


@cython.locals(left=double, qty=double, eps=double, old=object)
cpdef add_into(dict total, dict cost, int sign)
@cython.locals(left=double, qty=double, eps=double, old=object, kept=bint, _=Py_ssize_t)
cpdef add_times(dict total, dict cost, Py_ssize_t k)
@cython.locals(left=double, qty=double, eps=double, old=object)
cpdef take_back(dict total, dict cost, Py_ssize_t k)


cdef Py_ssize_t _SCAN


cdef class SentBatch:
    cdef public str run_id
    cdef public object version
    cdef public double at
    cdef public dict cost
    cdef public list ids
    cdef public list tries
    cdef public Py_ssize_t head
    cdef public Py_ssize_t left
    cdef public dict _where
    cdef public bint _twice

    @cython.locals(where=dict)
    cpdef add(self, str task_id, object attempt)
    @cython.locals(
        ids=list, tries=list, n=Py_ssize_t, head=Py_ssize_t, got=object, a=object, where=dict,
        i=Py_ssize_t, at=object
    )
    cpdef Py_ssize_t find(self, object task_id, object attempt) except -2
    @cython.locals(ids=list, tries=list, i=Py_ssize_t, got=object, a=object)
    cdef Py_ssize_t _scan(self, object task_id, object attempt) except -2
    @cython.locals(ids=list, where=dict, n=Py_ssize_t)
    cpdef drop(self, Py_ssize_t at)
    @cython.locals(ids=list, tries=list, out=list, i=Py_ssize_t, got=object)
    cpdef list entries(self)


cdef class Demand(RoomView):
    cdef public Durations durations
    cdef public RoomIndex _rooms
    cdef public set _dirty_rooms
    cdef public dict unacked

    cpdef bint alive(self, str name)
    @cython.locals(load=dict, capacity=dict, cost=dict, n=NodeState)
    cpdef went_out(self, str node, TaskRecord rec)
    @cython.locals(
        k=Py_ssize_t, load=dict, capacity=dict, n=NodeState, part=double, durations=Durations,
        work=dict, had=object, cur=double, charged=bint, unknown=double, took=double, charge=double,
        rec=TaskRecord, i=Py_ssize_t
    )
    cpdef went_out_all(self, str node, list recs, dict cost, list seconds=*)
    @cython.locals(load=dict, left=double)
    cpdef came_back(self, str node, TaskRecord rec)
    @cython.locals(
        n=Py_ssize_t, load=dict, work=dict, cur=double, charged=bint, eps=double,
        start=Py_ssize_t, end=Py_ssize_t, i=Py_ssize_t, cost=dict, other=dict, rec=TaskRecord,
        charge=double
    )
    cpdef came_back_all(self, str node, list recs)
    @cython.locals(pending=dict, batches=list, n=NodeState, last=SentBatch, version=object)
    cpdef sent(self, str node, str run_id, str task_id, object attempt, dict cost, double now)
    @cython.locals(
        k=Py_ssize_t, pending=dict, batches=list, n=NodeState, last=SentBatch, version=object,
        rec=TaskRecord, ids=list, tries=list
    )
    cpdef sent_all(self, str node, str run_id, list recs, dict cost, double now)
    @cython.locals(batches=list, b=SentBatch, at=Py_ssize_t, i=Py_ssize_t)
    cpdef object answered(self, str node, tuple key)
    @cython.locals(
        batches=list, b=SentBatch, hit=SentBatch, found=SentBatch, gone=Py_ssize_t,
        i=Py_ssize_t, got=object, a=object, ids=list, n=Py_ssize_t
    )
    cpdef answered_all(self, str node, str run_id, object accepted)
    @cython.locals(at=Py_ssize_t)
    cdef _taken_back(self, str node, list batches, SentBatch b, Py_ssize_t k)

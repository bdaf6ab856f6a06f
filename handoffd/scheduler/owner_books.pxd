# cython: language_level=3
# Types for owner_books.py (the base of OwnerScheduler, compiled with owner.pxd): a task's move,
# a dispatch and a cancel reach the compiled run, queue and books through C fields.

cimport cython

from handoffd.scheduler cimport history as hist

from handoffd.scheduler.outbox cimport Outbox, Placed
from handoffd.scheduler.owner_queries cimport OwnerQueries
from handoffd.scheduler.ready cimport ReadyQueue
from handoffd.scheduler.rebalance cimport Rebalance
from handoffd.scheduler.run cimport RunState, TaskRecord


cdef class OwnerBooks(OwnerQueries):
    cdef public double _now
    cdef public ReadyQueue _ready
    cdef public bint _dirty
    cdef public Outbox _out
    cdef public Rebalance _rebalance
    cdef public object _delays
    cdef public object on_change
    cdef public list _changed
    cdef public list _no_room
    cdef public list _back_on

    cpdef _cancel(self, list cancels, RunState run)
    cpdef _free(self, RunState run)
    @cython.locals(was_out=bint, is_out=bint)
    cpdef moved(self, RunState run, TaskRecord rec, str old, str new)
    @cython.locals(changed=list, rec=TaskRecord)
    cpdef succeeded_on(self, RunState run, str node, list recs)
    @cython.locals(back=list)
    cpdef _came_back(self, RunState run, TaskRecord rec, str node)
    @cython.locals(pin=object)
    cpdef _enqueue(self, RunState run, TaskRecord rec)
    @cython.locals(no_room=list, seen=tuple)
    cpdef _ask_room(self, object pin, object cost)
    cpdef bint _intake(self, RunState run, double now, object limit, bint first)
    @cython.locals(
        ordered=list, deps=dict, size=Py_ssize_t, end=Py_ssize_t, at=Py_ssize_t, rec=TaskRecord,
        block=list
    )
    cpdef bint _take_slice(self, RunState run, double now, object limit)
    @cython.locals(row=tuple, rec=TaskRecord, moves=list, k=Py_ssize_t, tally=dict, c=dict)
    cpdef _ready_block(self, RunState run, list recs, double now)
    cpdef _place(self)
    @cython.locals(spec=object, cost=object, task_id=str, attempt=object, now=double)
    @cython.locals(dispatches=dict, key=tuple, placed=Placed)
    cpdef _dispatch(self, RunState run, TaskRecord rec, str node, bint queued=*)
    @cython.locals(
        rec=TaskRecord, first=TaskRecord, cost=dict, now=double, run_id=str, dispatches=dict,
        key=tuple, placed=Placed, spec=object, task_id=str
    )
    cpdef _dispatch_block(self, RunState run, list recs, str node, bint queued=*, list seconds=*)
    @cython.locals(
        floor=cython.longlong, placed=dict, group_of=dict, wall=double, changed=list,
        run_id=str, rec=TaskRecord, attempt=cython.longlong, task_id=str, gid=object,
        moves=list, k=Py_ssize_t, c=dict, key=str, tally=dict, ready=ReadyQueue,
        row_of=cython.longlong, row=tuple, step=tuple, ids=list
    )
    cpdef _assign_block(
        self, RunState run, list recs, str node, double now, dict cost, list seconds=*
    )
    @cython.locals(
        attempt=cython.longlong, task_id=str, gid=object, c=dict, key=str, tally=dict, moves=list
    )
    cpdef _assign(self, RunState run, TaskRecord rec, str node, double now)

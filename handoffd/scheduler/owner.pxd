# cython: language_level=3
# Types for owner.py, compiled beside it (as run.pxd): the scheduler's per-task paths (a task's
# move, a dispatch, a report, an answer) call the compiled run, queue and books through C fields.

cimport cython

from handoffd.scheduler cimport successes

from handoffd.scheduler.owner_books cimport OwnerBooks
from handoffd.scheduler.run cimport RunState, TaskRecord


cdef class OwnerScheduler(OwnerBooks):
    cdef public str node_name
    cdef public long long term
    cdef public object _backend
    cdef public object _takeover
    cdef public object _releases
    cdef public object on_changes
    cdef public double wall_offset
    cdef public object counters

    @cython.locals(
        run=RunState, rec=TaskRecord, node=object, sender=str, run_id=str, running=bint,
        version_now=object, fresh=bint
    )
    cpdef _on_replied(self, object ev)
    @cython.locals(run=RunState, rec=TaskRecord)
    cpdef object _current(self, str run_id, str task_id, object attempt, str node)
    cpdef _on_succeeded(self, object ev)
    cpdef _apply(self, object event)
    cpdef _on_submit(self, object ev)
    @cython.locals(node=object, changed=int)
    cpdef _on_node_update(self, object ev)
    @cython.locals(i=Py_ssize_t, rest=Py_ssize_t, run=RunState, cancels=list, answered=bint)
    cpdef _on_all_succeeded(self, object ev)
    @cython.locals(run=RunState, rec=TaskRecord, alive=bint)
    cpdef _succeeded(self, str run_id, str task_id, object attempt, str node, object size, object value, double took)
    cpdef _accept_result(self, RunState run, TaskRecord rec, str node, object size, object value)
    @cython.locals(lo=Py_ssize_t)
    cpdef _close(self, RunState run)

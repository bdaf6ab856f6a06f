# cython: language_level=3
# Types for successes.py, compiled beside it (as run.pxd): a success report table's rows read and
# write the task records' and the run's C fields in one loop.

cimport cython

from handoffd.scheduler cimport history as hist
from handoffd.scheduler.cluster_view cimport ClusterView
from handoffd.scheduler.durations cimport Durations
from handoffd.scheduler.owner_books cimport OwnerBooks
from handoffd.scheduler.run cimport RunState, TaskRecord


@cython.locals(
    tasks=dict, durations=Durations, answered=bint, n=Py_ssize_t, i=Py_ssize_t, rec=TaskRecord,
    old=str, task_id=str, outputs=bint, at_once=bint, c=dict, tally=dict,
    from_assigned=Py_ssize_t, from_running=Py_ssize_t, table=Table, where=tuple, report=bint,
    timed=bint, k=Py_ssize_t, at=object, wall=object, linked=bint, id_col=list, try_col=list,
    size_col=list, value_col=list, took_col=list
)
cpdef tuple apply(RunState run, ClusterView view, str node, object ids, object tries, object sizes, object values, object took, double now, list cancels, list pids=*, list began=*, list ended=*, list bytes_in=*, list delays=*)
@cython.locals(last=tuple, n=Py_ssize_t, was=double, took=double, first=object)
cdef inline record_delay(list trail, object attempt, double began, list delays)
@cython.locals(tasks=dict, k=Py_ssize_t, rec=TaskRecord, trail=list, timed=bint)
cpdef observe(RunState run, str node, object ids, object tries, object sizes, list pids, list began, list ended, list bytes_in, list delays=*, Py_ssize_t start=*)
@cython.locals(done=Py_ssize_t)
cdef _count(dict tally, dict c, Py_ssize_t assigned, Py_ssize_t running)
@cython.locals(moves=list, unfinished=dict, tasks=dict, crec=TaskRecord)
cpdef finish(RunState run, TaskRecord rec, str old, tuple where, object size, object value, object at, object wall, object cause, bint outputs, list cancels, Table table=*, bint close=*, bint linked=*)


cdef class Table:
    cdef readonly RunState run
    cdef readonly str node
    cdef readonly OwnerBooks books
    cdef readonly Durations durations
    cdef public list done
    cdef public object shape
    cdef public list keys
    cdef public list secs

    @cython.locals(shape=str)
    cpdef learned(self, TaskRecord rec, object seconds)
    cpdef _learn(self)
    cpdef flush(self)

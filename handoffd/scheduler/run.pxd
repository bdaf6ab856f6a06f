# cython: language_level=3
# Types for run.py, compiled beside it (the python-zeroconf way, as durations.pxd): the .py stays
# the pure-Python build and the reference the tests hold the compiled one to; this file makes a
# task record and a run C classes, so the owner's per-task moves read and write struct fields.

cimport cython
from cpython.object cimport PyObject, PyTypeObject
from cpython.object cimport PyObject_GenericSetAttr as _store

cdef extern from "Python.h":
    PyTypeObject PyBaseObject_Type


# ``object.__new__(cls)`` as one C call (as plain_graph.pxd's).
cdef inline object _make(type cls):
    return PyBaseObject_Type.tp_new(cls, <PyObject*>(), NULL)

# (history's moves called as C functions: a Python call a move was ~4k instructions a task)
from handoffd.scheduler cimport history as hist


cdef class TaskRecord:
    cdef public object spec
    cdef public object id
    cdef public Py_ssize_t position
    cdef public double upward_rank
    cdef public str state
    cdef public long long attempt
    cdef public object node
    cdef public long long failures
    cdef public long long losses
    cdef public long long completions
    cdef public long long size
    cdef public object value
    cdef public tuple locations
    cdef public bint delayed
    cdef public tuple last_error
    cdef public list moves
    cdef public list attempts
    cdef public Py_ssize_t order
    cdef public bint queued
    cdef public bint in_heap
    cdef public tuple cost_items
    cdef public str shape_key
    cdef public str duration_key
    cdef public double charge
    cdef public object cost
    cdef public object pin

    cpdef bint has_copy(self)


@cython.locals(rec=TaskRecord)
cpdef TaskRecord new_record(object spec, Py_ssize_t position, double upward_rank, tuple cost_items, str skey, object cost=*, bint pinless=*)


cdef class MoveListener:
    cpdef moved(self, RunState run, TaskRecord rec, str old, str new)


cdef class RunState:
    cdef public str run_id
    cdef public object options
    cdef public long long seq
    cdef public long long term
    cdef public str state
    cdef public object error
    cdef public bint released
    cdef public long long attempt_floor
    cdef public set holders
    cdef public object listener
    cdef public MoveListener mover
    cdef public double wall_offset
    cdef public double submitted
    cdef public double finished
    cdef public dict counters
    cdef public str _policy_key
    cdef public list specs
    cdef public dict inline
    cdef public dict effective_deps
    cdef public dict consumers
    cdef public dict group_members
    cdef public dict group_of
    cdef public dict group_pin
    cdef public object wanted
    cdef public dict group_node
    cdef public tuple alike
    cdef public dict tasks
    cdef public Py_ssize_t remaining
    cdef public dict unfinished
    cdef public list ordered
    cdef public list ready_heap
    cdef public list ready_line
    cdef public Py_ssize_t ready_at
    cdef public Py_ssize_t intake
    cdef public object prebuilt
    cdef public list freed
    cdef public dict tally
    cdef public dict placed
    cdef public str end_reason
    cdef public Py_ssize_t closing
    cdef object __weakref__  # (tests check a released run is freed)

    cpdef object pin_of(self, str task_id)
    @cython.locals(old=str, c=dict, dep=object, moves=list, text=str, key=str, was_out=bint)
    cpdef move(self, TaskRecord rec, str new, double now, object cause, bint delayed=*, object a=*, object b=*)
    @cython.locals(d=str, drec=TaskRecord)
    cpdef bint inputs_ready(self, str task_id)
    @cython.locals(d=str)
    cpdef bint _inputs_done(self, str task_id)
    @cython.locals(deps=list, drec=TaskRecord, target=str, cancels=list)
    cpdef list make_ready(self, TaskRecord rec, double now, object cause, bint delayed=*, object a=*)
    @cython.locals(c=dict)
    cpdef assign(self, TaskRecord rec, str node, double now)
    @cython.locals(crec=TaskRecord, cancels=list)
    cpdef list succeeded(self, TaskRecord rec, str node, object size, object value, double now)
    @cython.locals(drec=TaskRecord)
    cpdef _free_unneeded(self, TaskRecord rec)
    cpdef list take_freed(self)
    cpdef tuple input_refs(self, str task_id)
    @cython.locals(rec=TaskRecord, locations=tuple, ref=object)
    cpdef object _ref(self, str dep)
    @cython.locals(held=dict, drec=TaskRecord)
    cpdef dict input_bytes(self, str task_id, object alive)


@cython.locals(
    tasks=dict, records=list, cost_items=tuple, skey=str, positions=list, ranks=list, regular=list,
    every=Py_ssize_t, i=Py_ssize_t, at=Py_ssize_t, rec=TaskRecord, ordered=list, placement=object,
    pinless=bint, cost=object,
)
cpdef void _build_records(RunState run, object graph) except *

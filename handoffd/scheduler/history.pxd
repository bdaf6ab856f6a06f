# cython: language_level=3
# Types for history.py, compiled beside it (as run.pxd): an attempt is a C class and every task
# move that opens or closes one runs compiled. The fields stay Python objects so both builds keep
# exactly the values they were given (an int stays an int on the wire).

cimport cython


cdef class Attempt:
    cdef public object attempt
    cdef public object node
    cdef public object state
    cdef public object dispatched
    cdef public object started
    cdef public object ended
    cdef public object pid
    cdef public object bytes_in
    cdef public object bytes_out
    cdef public object exc_type
    cdef public object message
    cdef public object traceback
    cdef public object cause

    cpdef tuple row(self)


cpdef Attempt _find(list attempts, object attempt)
cpdef _append(list attempts, Attempt a)
cpdef opened(list attempts, object attempt, object node, object wall)
@cython.locals(i=Py_ssize_t, trail=list, a=Attempt, last=Attempt)
cpdef observe_done(object tasks, object node, object task_ids, list attempts, list pids, list started, list ended, list bytes_in, list bytes_out, object latency)
cpdef moved(list attempts, object attempt, object node, object old, object new, object wall, object cause)
cpdef tuple freeze(object task_id, object state, object node, object attempts, object history, object wall_offset, object deps=*)
cpdef tuple freeze_all(object tasks, object deps, object wall_offset, double since=*, bint brief=*)

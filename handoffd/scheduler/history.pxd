# cython: language_level=3
# Types for history.py, compiled beside it (as run.pxd): every task move that opens or closes an
# attempt runs compiled. An attempt is a tuple row of Python objects, so both builds keep exactly
# the values they were given (an int stays an int on the wire).

cimport cython


cpdef tuple new_row(object attempt, object node, object dispatched)
@cython.locals(i=Py_ssize_t, a=object)
cpdef Py_ssize_t _index(list attempts, object attempt)
cpdef Py_ssize_t _append(list attempts, tuple row)
cpdef tuple _with(tuple row, object state, object ended, object cause)
cpdef opened(list attempts, object attempt, object node, object wall)
@cython.locals(k=Py_ssize_t)
cpdef observe_done(dict tasks, object node, object task_ids, list attempts, list pids, list started, list ended, list bytes_in, list bytes_out, list delays)
@cython.locals(i=Py_ssize_t, a=tuple)
cpdef observe_row(list trail, object attempt, object node, object pid, object began, object end, object bytes_in, object bytes_out)
@cython.locals(i=Py_ssize_t, a=tuple, e=double, b=double, said=str)
cpdef done(list trail, object attempt, object node, object pid, object began, object end, object bytes_in, object bytes_out, object wall, object cause)
@cython.locals(k=Py_ssize_t, trail=list, last=tuple, began=double, was=double, took=double, added=set)
cpdef dispatch_delays(dict tasks, object task_ids, list attempts, list started, list delays)
@cython.locals(i=Py_ssize_t, a=tuple, closed_as=dict)
cpdef moved(list attempts, object attempt, object node, object old, object new, object wall, object cause)
@cython.locals(i=Py_ssize_t, a=tuple)
cpdef succeeded(list attempts, object attempt, object node, object wall, object cause)
@cython.locals(i=Py_ssize_t, found=Py_ssize_t, a=tuple)
cpdef settled(list attempts, object state, object attempt, object found_on)
cpdef str cause_text(object cause, object a, object b)
@cython.locals(out=list, i=Py_ssize_t)
cpdef list transitions(object moves)
@cython.locals(out=list)
cpdef list flat(object history)
cpdef tuple freeze(object task_id, object state, object node, object attempts, object history, object wall_offset, object deps=*)
cpdef tuple freeze_all(object tasks, object deps, object wall_offset, double since=*, bint brief=*)

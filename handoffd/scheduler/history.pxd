# cython: language_level=3
# Types for history.py, compiled beside it (as run.pxd): every task move that opens or closes an
# attempt runs compiled. An attempt is a tuple row of Python objects, so both builds keep exactly
# the values they were given (an int stays an int on the wire).

cimport cython


cpdef tuple new_row(object attempt, object node, object dispatched)
@cython.locals(i=Py_ssize_t)
cpdef Py_ssize_t _index(list attempts, object attempt)
cpdef Py_ssize_t _append(list attempts, tuple row)
cpdef tuple _with(tuple row, object state, object ended, object cause)
cpdef opened(list attempts, object attempt, object node, object wall)
@cython.locals(k=Py_ssize_t, i=Py_ssize_t, trail=list, a=tuple, last=tuple)
cpdef observe_done(object tasks, object node, object task_ids, list attempts, list pids, list started, list ended, list bytes_in, list bytes_out, object latency)
@cython.locals(i=Py_ssize_t, a=tuple)
cpdef moved(list attempts, object attempt, object node, object old, object new, object wall, object cause)
@cython.locals(i=Py_ssize_t, found=Py_ssize_t, a=tuple)
cpdef settled(list attempts, object state, object attempt, object found_on)
cpdef tuple freeze(object task_id, object state, object node, object attempts, object history, object wall_offset, object deps=*)


cdef class MoveLog:
    cdef public Py_ssize_t n
    cdef public Py_ssize_t room
    cdef public list words
    cdef public dict word_ix
    cdef object _at
    cdef object _code
    cdef object _arg
    cdef object _ref
    cdef double[:] at
    cdef long long[:] code
    cdef long long[:] arg
    cdef long long[:] ref

    @cython.locals(n=Py_ssize_t, room=Py_ssize_t, arrays=list)
    cpdef _grow(self)
    cpdef Py_ssize_t word(self, object w)
    @cython.locals(i=Py_ssize_t)
    cpdef add(self, Py_ssize_t task, str old, str new, double now, int kind, long long arg, object word)
    @cython.locals(n=Py_ssize_t)
    cpdef _put(self, double now, long long code, long long arg, long long ref)
    cpdef add_row(self, Py_ssize_t task, object row)
    @cython.locals(code=cython.longlong, kind=int)
    cpdef tuple row(self, Py_ssize_t i, object ordered)
    cpdef str text(self, int kind, long long arg, object word, object ordered)
    @cython.locals(i=Py_ssize_t, found=list, out=list)
    cpdef list task_rows(self, Py_ssize_t task, object ordered)
    @cython.locals(n=Py_ssize_t, i=Py_ssize_t, k=Py_ssize_t, found=list, last=list, rows=list)
    cpdef list by_task(self, object ordered, bint since=*, double after=*)
    cpdef double _time(self, Py_ssize_t i)


cpdef tuple freeze_all(object tasks, object deps, object wall_offset, double since=*, bint brief=*, MoveLog log=*, object ordered=*)

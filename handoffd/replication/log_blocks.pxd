# cython: language_level=3
# Types for log_blocks.py, compiled beside it (as store/block.pxd): the run's dirty set and held
# dict typed, so each test, insert and pop is the set's or dict's own C call.

cimport cython


@cython.locals(task_id=object)
cpdef bint hold(set dirty, dict held, list task_ids, object now) except -1
@cython.locals(task_id=object)
cpdef bint unhold(dict held, list task_ids) except -1
@cython.locals(expired=list, task_id=object, since=object)
cpdef bint release(dict held, set dirty, object cutoff) except -1

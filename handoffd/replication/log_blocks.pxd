# cython: language_level=3
# Types for log_blocks.py, compiled beside it (as store/block.pxd): the run's dirty tasks and held
# ones typed (two dicts: their order), so each test, insert and pop is the dict's own C call.

cimport cython


@cython.locals(task_id=object)
cpdef bint hold(dict dirty, dict held, list task_ids, object now) except -1
@cython.locals(task_id=object)
cpdef mark(dict dirty, list task_ids)
@cython.locals(tasks=tuple, taken=list, task_id=object)
cpdef tuple take(dict dirty, object limit)
@cython.locals(task_id=object)
cpdef bint unhold(dict held, list task_ids) except -1
@cython.locals(expired=list, task_id=object, since=object)
cpdef bint release(dict held, dict dirty, object cutoff) except -1

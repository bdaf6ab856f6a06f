# cython: language_level=3
# Types for log_blocks.py, compiled beside it (as store/block.pxd): a run's changed tasks typed (a
# dict: its order), so each test, insert and overwrite is the dict's own C call.

cimport cython


cdef extern from "Python.h":
    # (an empty dict whose table holds ``size`` entries without a resize; a new reference)
    dict _sized "_PyDict_NewPresized"(Py_ssize_t size)


@cython.locals(task_id=object, size=Py_ssize_t)
cpdef bint hold(dict changes, list task_ids, object now) except -1
@cython.locals(task_id=object)
cpdef mark(dict changes, list task_ids)
@cython.locals(
    most=Py_ssize_t, taken=list, rest=dict, left=int, released=bint, releasing=bint,
    task_id=object, since=object,
)
cpdef tuple take(dict changes, object limit, object cutoff)
@cython.locals(
    kinds=list, last=object, primary=object, run_id=object, task_id=object, held=object,
    changes=dict,
)
cpdef list feed(dict runs, list moves, object now, dict holding, dict dirty_runs)
@cython.locals(since=object)
cpdef object first_held(dict changes)

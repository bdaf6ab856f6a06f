# cython: language_level=3
# Types for block.py, compiled beside it (as protocol/report_read.pxd): the loop over a block's
# values with C indices, the store's dicts typed so each look-up is the dict's own C call.

cimport cython


@cython.locals(count=Py_ssize_t, held=Py_ssize_t, before=Py_ssize_t, undo=Py_ssize_t, key=tuple)
cpdef bint hold_new(dict memory, dict spilled, object run_id, list task_ids, object values)
@cython.locals(count=Py_ssize_t, freed=Py_ssize_t, mapped=object, task_id=object, value=object)
cpdef tuple drop_held(dict memory, object run_id, object task_ids)

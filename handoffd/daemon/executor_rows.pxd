# cython: language_level=3
# Types for executor_rows.py, compiled beside it (as executor_block.pxd): a row's fields as C
# indices, the counters as C integers, the dicts and lists typed so each step is their own C call.
# The queue's sums kept between writes (``only_sum``, ``sum1``) are C doubles: the same IEEE
# additions and subtractions, in the same order, as the .py's floats.

cimport cython

cdef Py_ssize_t _COST, _INCLUSION, _PAYLOAD, _QKEY, _RUN, _SLOT, _TASK, _TIMEOUT


@cython.locals(
    tasks=dict, local=dict, total=dict, limit=dict, count=Py_ssize_t,
    at=Py_ssize_t, payload_frame=Py_ssize_t, kept=dict, only_sum=double, only_live=bint,
    summed=double, only_qty=double, only_top=double, seen=bint, row=list, n=Py_ssize_t,
    i=Py_ssize_t,
)
cpdef object accept_columns(
    object state, object t, object frames, list refused, list started, list queued
)
@cython.locals(
    target=Py_ssize_t, low=Py_ssize_t, left=Py_ssize_t, scanned=Py_ssize_t, scan=Py_ssize_t,
    room=dict, slots=list, chains=dict, only_jobs=list, local=dict, tasks=dict, total=dict,
    only_rows=list, size=Py_ssize_t, row=bint, block_keys=list, block_payloads=list, block_titles=list,
    order=list, at=Py_ssize_t, kept_from=Py_ssize_t, sum1=double, sum1_live=bint, qty1=double,
)
cpdef object refill(object state)
cpdef object _fold(list started, object block)
cpdef object start_task(object state, object task)

# cython: language_level=3
# Types for executor_block.py, compiled beside it (as protocol/report_read.pxd): the block's loops
# with C indices, the mean and the times as C doubles (the same IEEE operations, in the same order,
# as the .py's floats), the lists and dicts typed so each step is their own C call.

cimport cython

cdef Py_ssize_t _SLOT, _RUN, _OWNER, _PAYLOAD, _KEY


@cython.locals(tasks=dict, keys=list, count=Py_ssize_t, lead=Py_ssize_t)
cpdef object ended_kept(object ends, object block)
@cython.locals(
    keys=list, count=Py_ssize_t, at=Py_ssize_t, left=Py_ssize_t, half=Py_ssize_t,
    biggest=Py_ssize_t, size=Py_ssize_t, limit=Py_ssize_t, seconds=double, fast=double,
    mean=double, duration=double, ended=double, one_payload=bint, refill=bint,
    ids=list, sizes=list, attempts=list, started=list, sizes_in=list, start=Py_ssize_t,
    tasks=dict, rows=list, outbox=dict,
)
cpdef bint ended_block(object ends, object block, object first)
@cython.locals(
    tasks=dict, outbox=dict, ended=double, limit=Py_ssize_t, mean=double, half=Py_ssize_t,
    seconds=double, most=Py_ssize_t, fast=double, fast_half=Py_ssize_t, done=Py_ssize_t,
    seconds_taken=double, per_task=double, size=Py_ssize_t, first=Py_ssize_t, left=Py_ssize_t,
    ok=bint, ids=list, tries=list, sizes=list, durations=list, pids=list, starts=list,
    ends_at=list, bytes_ins=list, values=list, outputs=list, held=dict,
)
cpdef object ended_each(object ends, object outcomes)

# cython: language_level=3
# Types for _kept.py, compiled beside it (as daemon/executor_block.pxd): the block's loops with C
# indices, the frames' head bytes and the tokens as C integers, the buffer, lists and dicts typed
# so each step is their own C call.

cimport cython

cdef Py_ssize_t _TAG, _MOST, _SHORT, _LEAD, _TOKEN_AT


@cython.locals(token=cython.ulonglong, end=Py_ssize_t)
cdef unsigned long long _token_at(bytearray buf, Py_ssize_t at) except? 0xFFFFFFFFFFFFFFFF


@cython.locals(
    buf=bytearray, n=Py_ssize_t, size=Py_ssize_t, frame=Py_ssize_t, count=Py_ssize_t,
    at=Py_ssize_t, start=Py_ssize_t, first_at=Py_ssize_t, end=Py_ssize_t, taken=Py_ssize_t,
    b1=int, b2=int, b3=int, drop=bint, token=cython.ulonglong,
    sent=dict, keys=list, run_keys=list, jobs=list, titles=list, payloads=list, ended=list, flat=tuple,
)
cpdef Py_ssize_t kept_block(object worker, dict live, list outcomes, object pid) except -1

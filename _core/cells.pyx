# cython: language_level=3
"""The compiled core's readers of resource maps (plain dicts walked in C), shared by the kernels of
``sched.pyx`` (cimported, ``cells.pxd``): the kinds of a pass's maps in their fixed order, cached
by key identity, and dense rows of quantities. Split from ``sched.pyx`` (the 700-line rule); the
pure-Python twins are in ``_consts.py`` / ``sched_py.py``."""

from cpython.dict cimport PyDict_Next
from cpython.ref cimport PyObject
from libc.math cimport isfinite

from ._consts import STANDARD_KINDS, quantity_error

cdef tuple _STANDARD = tuple(STANDARD_KINDS)

# Distinct keys remembered by identity while ``_kinds`` walks the maps: a cluster's maps share a
# few key objects (each node's report and each task's cost name the same kinds).
cdef enum:
    _KEY_CACHE = 8


cdef list _kinds(tuple groups):
    """``_consts.kinds`` over every map of each sequence in ``groups``, compiled (the same kinds in
    the same order): a placement pass and a window fill each ask it once, and the interpreted one
    was the largest Python step left in the owner's pass. A plain dict's keys are walked in C and
    a key already seen as the same object is not hashed again (most keys of a pass are the same
    few objects: one ``set.update`` per map, a bound-method call and an argument tuple each, cost
    more than the walk); any other mapping goes through ``set.update``."""
    cdef set seen = set()
    cdef list out = []
    cdef Py_ssize_t standard = 0, pos, n_cached = 0, c
    # (borrowed: ``seen`` holds a reference to each before it is cached, so none is freed and
    # its address reused while the walk runs)
    cdef PyObject* cached[_KEY_CACHE]
    cdef PyObject* key
    cdef PyObject* value
    cdef bint known
    for maps in groups:
        for m in maps:
            if type(m) is not dict:
                seen.update(m)
                continue
            pos = 0
            while PyDict_Next(m, &pos, &key, &value):
                known = False
                for c in range(n_cached):
                    if cached[c] == key:
                        known = True
                        break
                if known:
                    continue
                seen.add(<object>key)
                if n_cached < _KEY_CACHE:
                    cached[n_cached] = key
                    n_cached += 1
    for k in _STANDARD:
        if k in seen:
            out.append(k)
            standard += 1
    if len(seen) > standard:
        out.extend(sorted(seen.difference(_STANDARD)))
    return out


# The distinct key objects of the last ``_dims`` walk (references held, so an address seen again
# is the same object) and its answer: an owner's passes name the same few kind objects, and
# ``_kinds``' set, membership tests and sort were a fifth of a one-task placement call.
cdef list _last_keys = []
cdef tuple _last_dims = None


cdef tuple _dims(tuple groups):
    """(``_kinds(groups)``, {kind: its dim}), the last answer again when the walk meets the very
    same distinct key objects (plain dicts only, at most ``_KEY_CACHE`` of them)."""
    global _last_keys, _last_dims
    cdef PyObject* cached[_KEY_CACHE]
    cdef PyObject* key
    cdef PyObject* value
    cdef Py_ssize_t n_cached = 0, pos, c
    cdef bint known, overflow = False
    for maps in groups:
        for m in maps:
            if type(m) is not dict:
                overflow = True
                break
            pos = 0
            while PyDict_Next(m, &pos, &key, &value):
                known = False
                for c in range(n_cached):
                    if cached[c] == key:
                        known = True
                        break
                if known:
                    continue
                if n_cached == _KEY_CACHE:
                    overflow = True
                    break
                cached[n_cached] = key
                n_cached += 1
            if overflow:
                break
        if overflow:
            break
    if not overflow and _last_dims is not None and n_cached == len(_last_keys):
        for c in range(n_cached):
            if cached[c] != <PyObject*>_last_keys[c]:
                break
        else:
            return _last_dims
    dims = _kinds(groups)
    answer = (dims, {kind: d for d, kind in enumerate(dims)})
    if not overflow:
        _last_keys = [<object>cached[c] for c in range(n_cached)]
        _last_dims = answer
    return answer


cdef double _quantity(object value, str what, Py_ssize_t i, object kind) except? -1.0:
    cdef double q
    if type(value) is float:
        q = value
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise quantity_error(what, i, kind, value, "is not a number")
    else:
        try:
            q = float(value)
        except OverflowError:
            raise quantity_error(what, i, kind, value, "is not a finite number") from None
    if not isfinite(q):
        raise quantity_error(what, i, kind, value, "is not a finite number")
    return q


cdef int _fill(object maps, dict index, Py_ssize_t n_dims, double* out, str what, bint clamp) except -1:
    """Dense rows of ``maps`` into ``out`` (zeroed by the caller); see ``sched_py._rows``."""
    cdef Py_ssize_t i = 0, pos
    cdef double q
    cdef PyObject* key
    cdef PyObject* value
    for m in maps:
        # (walked in C: an item tuple and a Python iterator per map were most of a one-task call)
        plain = m if type(m) is dict else dict(m.items())
        pos = 0
        while PyDict_Next(plain, &pos, &key, &value):
            q = _quantity(<object>value, what, i, <object>key)
            if q < 0.0:
                if not clamp:
                    raise quantity_error(
                        what, i, <object>key, <object>value, "is negative; quantities are >= 0"
                    )
                q = 0.0
            out[i * n_dims + <Py_ssize_t>index[<object>key]] = q
        i += 1
    return 0

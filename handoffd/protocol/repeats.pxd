# cython: language_level=3
# Types for repeats.py, compiled beside it (as report_read.pxd): a repeated request's ids read from
# its bytes with C offsets, its message's slots filled in a C loop, its reply's bytes joined in C.
# The messages, envelopes and counters stay Python objects; final classes (no virtual dispatch).

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.object cimport Py_EQ, PyObject_RichCompareBool
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from libc.string cimport memcpy

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL

cdef object _new, _tuple_new, _SLOT
@cython.locals(slots=tuple)
cdef tuple _slots_of(object cls, list names)
cdef dict _UINT


# ``_made_of``: each slot written at its descriptor's offset, as its ``__set__`` writes it (the
# reference taken, the slot's old one, none in a new object, let go). ``Repeats.__init__``
# checked that every descriptor is a slot of ``cls`` itself (a member descriptor: its offset is
# within every ``cls``) and that ``object.__new__`` makes it.
cdef inline void _put(object msg, object slot, object value) noexcept:
    cdef Py_ssize_t offset = (<PyMemberDescrObject*><PyObject*>slot).d_member.offset
    cdef PyObject** at = <PyObject**>((<char*><PyObject*>msg) + offset)
    cdef PyObject* old = at[0]
    Py_INCREF(value)
    at[0] = <PyObject*>value
    Py_XDECREF(old)


# ``_same_of``: each field past the ids read at its slot's offset and compared as a tuple's items
# are (identity, then ==), no tuple of them made.
cdef inline bint _same(object msg, tuple slots, tuple rest) except -1:
    cdef Py_ssize_t i, offset
    cdef PyObject* got
    if len(slots) != len(rest) + 2:
        raise ValueError("a field without its slot")
    for i in range(len(rest)):
        offset = (<PyMemberDescrObject*><PyObject*>slots[i + 2]).d_member.offset
        got = (<PyObject**>((<char*><PyObject*>msg) + offset))[0]
        if got == NULL:
            raise AttributeError(f"{type(msg).__name__}: a field not set")
        if got != <PyObject*>rest[i] and not PyObject_RichCompareBool(<object>got, rest[i], Py_EQ):
            return False
    return True


cdef inline object _made(object cls, tuple slots, object request_id, object run_id, tuple rest):
    cdef object msg = _new(cls)
    cdef Py_ssize_t i
    if len(slots) != len(rest) + 2:
        raise ValueError("a field without its slot")
    _put(msg, slots[0], request_id)
    _put(msg, slots[1], run_id)
    for i in range(len(rest)):
        _put(msg, slots[i + 2], rest[i])
    return msg


# ``_written_of``: the body in one allocation, the ids packed as msgpack packs them (an unsigned
# int in its shortest form, a str with its shortest header: use_bin_type's str 8 included).
cdef inline Py_ssize_t _put_uint(unsigned char* at, unsigned long long value, int width) noexcept:
    cdef int i
    for i in range(width - 1, -1, -1):
        at[i] = value & 0xFF
        value >>= 8
    return width


cdef inline object _written(object pack, bytes prefix, object request_id, object run_id, bytes suffix):
    cdef unsigned long long number = request_id  # (0..INT_MAX: ``write`` checked it)
    cdef Py_ssize_t size = 0
    cdef const char* text
    cdef Py_ssize_t head, id_size, total, at
    cdef bytes out
    cdef unsigned char* p
    try:
        text = PyUnicode_AsUTF8AndSize(run_id, &size)
    except UnicodeEncodeError:
        return None
    if number < 0x80:
        id_size = 1
    elif number <= 0xFF:
        id_size = 2
    elif number <= 0xFFFF:
        id_size = 3
    elif number <= 0xFFFFFFFF:
        id_size = 5
    else:
        id_size = 9
    if size < 32:
        head = 1
    elif size <= 0xFF:
        head = 2
    elif size <= 0xFFFF:
        head = 3
    else:
        head = 5
    total = len(prefix) + id_size + head + size + len(suffix)
    out = PyBytes_FromStringAndSize(NULL, total)
    p = <unsigned char*>PyBytes_AS_STRING(out)
    memcpy(p, PyBytes_AS_STRING(prefix), len(prefix))
    at = len(prefix)
    if id_size == 1:
        p[at] = <unsigned char>number
        at += 1
    else:
        p[at] = 0xCC if id_size == 2 else 0xCD if id_size == 3 else 0xCE if id_size == 5 else 0xCF
        at += 1 + _put_uint(p + at + 1, number, <int>(id_size - 1))
    if head == 1:
        p[at] = <unsigned char>(0xA0 | size)
        at += 1
    else:
        p[at] = 0xD9 if head == 2 else 0xDA if head == 3 else 0xDB
        at += 1 + _put_uint(p + at + 1, <unsigned long long>size, <int>(head - 1))
    memcpy(p + at, text, size)
    at += size
    memcpy(p + at, PyBytes_AS_STRING(suffix), len(suffix))
    return out


# ``_count_of``: a Counter's ``counts[key] += 1`` straight on its dict (Counter's __setitem__ is
# dict's; a key not there counts from 0, as its __missing__ gives).
cdef inline int _count(object counts, object key) except -1:
    cdef PyObject* had = PyDict_GetItem(counts, key)
    if had == NULL:
        PyDict_SetItem(counts, key, 1)
    else:
        PyDict_SetItem(counts, key, (<object>had) + 1)
    return 0


@cython.locals(first=Py_ssize_t, size=object)
cdef tuple _uint(bytes data, Py_ssize_t at)
@cython.locals(first=Py_ssize_t, size=Py_ssize_t, end=Py_ssize_t)
cdef tuple _str(bytes data, Py_ssize_t at)
cdef Py_ssize_t _head_size(Py_ssize_t first)


@cython.final
cdef class Repeats:
    cdef public int type_id
    cdef public Py_ssize_t hits
    cdef public Py_ssize_t kept
    cdef list _names
    cdef object _cls
    cdef tuple _slots
    cdef object _decoded
    cdef object _pack
    cdef bytes _prefix
    cdef bytes _suffix
    cdef tuple _rest
    cdef object _envelope
    cdef bint _fresh
    cdef Py_ssize_t _backoff
    cdef Py_ssize_t _skip

    @cython.locals(prefix=bytes, suffix=bytes, at=Py_ssize_t, n=Py_ssize_t, first=Py_ssize_t,
                   end=Py_ssize_t, got=tuple, run=tuple, msg=object)
    cpdef tuple read(self, bytes head)
    @cython.locals(n=Py_ssize_t, i=Py_ssize_t, head=object, hit=tuple)
    cpdef object decoded(self, object frames, object limits, object stats)
    @cython.locals(size=Py_ssize_t, at=Py_ssize_t, got=tuple, run=tuple, front=bytes, pack=object)
    cpdef learn(self, bytes head, object envelope, tuple values, object msg)


@cython.final
cdef class ReplyRepeats:
    cdef public object cls
    cdef public int type_id
    cdef public Py_ssize_t hits
    cdef tuple _slots
    cdef object _stats
    cdef bint _kept
    cdef object _envelope
    cdef tuple _rest
    cdef bytes _prefix
    cdef bytes _suffix
    cdef object _pack

    @cython.locals(kept=object, body=object)
    cpdef object write(self, object msg, object envelope)
    @cython.locals(ids=bytes, at=Py_ssize_t, slots=tuple, i=Py_ssize_t)
    cpdef learn(self, object msg, object envelope, object body)

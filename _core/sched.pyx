# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled scheduler-facing kernels: resource dicts and lists in, answers out, no numpy.

The same names, signatures and answers as the pure-Python twin ``sched_py`` (read its docstring
for what each kernel decides). The dicts are copied into C buffers while they are validated, then
``place`` runs ``binpack.pyx``'s placement kernel (``order``, the ranking kernel and sort, is
``ranking.pyx``'s, re-exported here and counted with the others), so one
algorithm serves every batch size: a one-task batch costs a few microseconds and never builds an
array. ``fits``, ``below_low_water`` and ``WindowFill`` work on the dicts (or dense copies of them)
with the float operations of the twin, in the same order.
"""

from cpython.dict cimport PyDict_GetItem, PyDict_Next
from cpython.ref cimport PyObject
from libc.math cimport isfinite
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, malloc
from libc.stdlib cimport free as c_free
from libc.string cimport memset

from .binpack cimport place_buffers
from .cells cimport _dims, _fill, _kinds, _quantity
from .ranking cimport _integer, _number

from ._consts import EPS, KERNELS, POLICIES, item_error, policy_code, quantity_error
from .ranking import order, ordered

__all__ = [
    "BACKEND",
    "WindowFill",
    "below_low_water",
    "decisions",
    "fits",
    "order",
    "place",
    "place_one",
    "prefer",
    "take",
    "window_fill",
]

BACKEND = "cython"

cdef enum:
    _SPREAD = 1
    _FIRST_FIT = 2
    _PLACE = 0
    _ORDER = 1
    _WINDOW = 2
    _FITS = 3
    _PREFER = 4
    _TAKE = 5
    _N_KERNELS = 6

cdef double _EPS = EPS
cdef unsigned long long _counts[_N_KERNELS]


def decisions():
    """Decisions taken by this backend so far, per kernel."""
    return {KERNELS[i]: ordered() if i == _ORDER else _counts[i] for i in range(_N_KERNELS)}


# Policy names to kernel codes (``_consts.policy_code`` for any other name: it raises).
cdef dict _CODES = {name: code for code, name in enumerate(POLICIES)}


cdef inline int _policy(object policy) except -1:
    cdef PyObject* p = PyDict_GetItem(_CODES, policy) if type(policy) is str else NULL
    return policy_code(policy) if p is NULL else <int>(<object>p)


cdef int _node_indices(object values, Py_ssize_t n_nodes, str name, int64_t* out) except -1:
    cdef Py_ssize_t i = 0
    for value in values:
        # (a plain int needs no ``operator.index`` call: the scheduler's indices all are)
        v = value if type(value) is int else _integer(value, name, i)
        if not -1 <= v < n_nodes:
            raise item_error(
                name, i, v, f"is out of range: -1 (none) or a node index 0..{n_nodes - 1}"
            )
        out[i] = v
        i += 1
    return 0


cdef list _followed(object follow, Py_ssize_t n_tasks):
    """``follow`` checked (see ``sched_py._followed``); None when nobody follows."""
    if follow is None:
        return None
    if len(follow) != n_tasks:
        raise ValueError(f"follow needs one entry per demand ({n_tasks}), got {len(follow)}")
    cdef list out = []
    cdef Py_ssize_t t = 0
    cdef bint anyone = False
    for value in follow:
        v = _integer(value, "follow", t)
        if not -1 <= v < t:
            raise item_error("follow", t, v, "is out of range: -1 (none) or an earlier task")
        if v >= 0:
            anyone = True
        out.append(v)
        t += 1
    return out if anyone else None


def place(demands, frees, capacities, pins, prefs, policy="binpack", follow=None):
    """Node index per demand (-1: none), placed in list order; see ``sched_py.place``."""
    cdef int code = _policy(policy)
    cdef Py_ssize_t n_tasks = len(demands), n_nodes = len(frees), n_dims, t, n_order
    cdef int64_t lead
    if len(capacities) != n_nodes:
        raise ValueError(f"capacities has {len(capacities)} entries but frees has {n_nodes}")
    if len(pins) != n_tasks or len(prefs) != n_tasks:
        raise ValueError(
            f"pins and prefs need one entry per demand ({n_tasks}), got {len(pins)} and {len(prefs)}"
        )
    dims, kind_index = _dims((demands, frees, capacities))
    cdef dict index = kind_index
    n_dims = len(dims)
    cdef Py_ssize_t n_d = n_tasks * n_dims, n_f = n_nodes * n_dims
    cdef double* buf = <double*>calloc(n_d + 2 * n_f + 1, sizeof(double))
    cdef int64_t* ibuf = <int64_t*>malloc((4 * n_tasks + 1) * sizeof(int64_t))
    try:
        if buf == NULL or ibuf == NULL:
            raise MemoryError(f"placement buffers for {n_tasks} tasks on {n_nodes} nodes")
        _fill(demands, index, n_dims, buf, "demand", False)
        _fill(frees, index, n_dims, buf + n_d, "free", True)
        _fill(capacities, index, n_dims, buf + n_d + n_f, "capacity", False)
        _node_indices(pins, n_nodes, "pins", ibuf + n_tasks)
        _node_indices(prefs, n_nodes, "prefs", ibuf + 2 * n_tasks)
        leader = _followed(follow, n_tasks)
        n_order = 0
        for t in range(n_tasks):
            if leader is None or <int64_t>leader[t] < 0:
                ibuf[n_order] = t
                n_order += 1
        if n_tasks * n_nodes <= 64:  # (the GIL kept: letting it go and taking it back was a
            # fifth of a pass's one task on a node or two, and no thread could use it then)
            place_buffers(
                buf, buf + n_d, buf + n_d + n_f, n_tasks, n_nodes, n_dims, ibuf, n_order,
                ibuf + n_tasks, ibuf + 2 * n_tasks, code, ibuf + 3 * n_tasks,
            )
        else:
            with nogil:
                place_buffers(
                    buf, buf + n_d, buf + n_d + n_f, n_tasks, n_nodes, n_dims, ibuf, n_order,
                    ibuf + n_tasks, ibuf + 2 * n_tasks, code, ibuf + 3 * n_tasks,
                )
        if leader is not None:
            for t in range(n_tasks):
                lead = leader[t]
                if lead >= 0:
                    ibuf[3 * n_tasks + t] = ibuf[3 * n_tasks + lead]
        result = [ibuf[3 * n_tasks + t] for t in range(n_tasks)]
    finally:
        c_free(buf)
        c_free(ibuf)
    _counts[_PLACE] += n_tasks
    return result




# Doubles a one-task placement keeps on the stack (its need and each candidate's free and
# capacity rows); more candidates or kinds than that take the heap.
cdef enum:
    _ONE_STACK = 96


cdef inline bint _fits_map(object need, object free) except -1:
    """``fits`` without its count (the caller counts), the same float operations."""
    cdef double q, have
    cdef PyObject* p
    cdef bint plain = type(free) is dict
    for kind, qty in need.items():
        q = qty
        if q > 0.0:
            if plain:
                p = PyDict_GetItem(free, kind)
                have = 0.0 if p is NULL else <double>(<object>p)
            else:
                have = free.get(kind, 0.0)
            if have + _EPS < q:
                return False
    return True


cdef inline bint _plain_row(object m, bint clamp):
    """``m`` a dict of str keys and finite floats (>= 0 unless ``clamp``): ``_kinds`` sorts
    its keys and ``_fill`` takes its values without an error (else the general path raises)."""
    cdef Py_ssize_t pos = 0
    cdef PyObject* key
    cdef PyObject* value
    cdef double q
    if type(m) is not dict:
        return False
    while PyDict_Next(m, &pos, &key, &value):
        if type(<object>key) is not str or type(<object>value) is not float:
            return False
        q = <double>(<object>value)
        if not isfinite(q) or (q < 0.0 and not clamp):
            return False
    return True


def place_one(need, free, capacities, pin, pref, policy="binpack"):
    """One task's node name (None: none); see ``sched_py.place_one``: the candidates' ``fits``
    and the ``place`` call in C, with no index lists, no result list and no heap buffers for a
    task on a few nodes."""
    cdef int code = _policy(policy)
    cdef Py_ssize_t n_nodes = len(free), n_cand = 0, n_dims, i = 0, n_f
    cdef int64_t at = -1, before = -1
    cdef int64_t ibuf[4]
    cdef double sbuf[_ONE_STACK]
    cdef double* buf = sbuf
    if len(capacities) != n_nodes:
        raise ValueError(f"capacities has {len(capacities)} entries but free has {n_nodes}")
    # (the first candidate in locals: the lists only once a second one fits)
    cdef object name0 = None, f0 = None, cap0 = None
    cdef list names = None
    cdef list frees = None
    cdef list caps = None
    # (walked in C, as ``_fill``: an item tuple a node was a tenth of the call)
    cdef dict plain = free if type(free) is dict else dict(free.items())
    cdef Py_ssize_t pos = 0
    cdef PyObject* key
    cdef PyObject* value
    while PyDict_Next(plain, &pos, &key, &value):
        name = <object>key
        f = <object>value
        capacity = capacities[i]
        i += 1
        _counts[_FITS] += 1
        if _fits_map(need, f):
            if pin is not None and name == pin:
                at = n_cand
            elif pin is None and pref is not None and name == pref:
                before = n_cand
            if n_cand == 0:
                name0, f0, cap0 = name, f, capacity
            else:
                if n_cand == 1:
                    names, frees, caps = [name0], [f0], [cap0]
                names.append(name)
                frees.append(f)
                caps.append(capacity)
            n_cand += 1
    if n_cand == 0 or (pin is not None and at < 0):
        return None
    if n_cand == 1:
        if _plain_row(need, False) and _plain_row(f0, True) and _plain_row(cap0, False):
            # One candidate (a pin's is it): every policy places the task there, as the kernel
            # would (it fits the clamped row), with nothing its rows' checks would refuse.
            _counts[_PLACE] += 1
            return name0
        names, frees, caps = [name0], [f0], [cap0]
    dims, kind_index = _dims(((need,), frees, caps))
    n_dims = len(dims)
    n_f = n_cand * n_dims
    if n_dims + 2 * n_f + 1 > _ONE_STACK:
        buf = <double*>calloc(n_dims + 2 * n_f + 1, sizeof(double))
        if buf == NULL:
            raise MemoryError(f"placement buffers for a task on {n_cand} nodes")
    else:
        memset(sbuf, 0, (n_dims + 2 * n_f + 1) * sizeof(double))
    try:
        _fill((need,), kind_index, n_dims, buf, "demand", False)
        _fill(frees, kind_index, n_dims, buf + n_dims, "free", True)
        _fill(caps, kind_index, n_dims, buf + n_dims + n_f, "capacity", False)
        ibuf[0] = 0
        ibuf[1] = at
        ibuf[2] = before
        place_buffers(
            buf, buf + n_dims, buf + n_dims + n_f, 1, n_cand, n_dims, ibuf, 1, ibuf + 1,
            ibuf + 2, code, ibuf + 3,
        )
    finally:
        if buf != sbuf:
            c_free(buf)
    _counts[_PLACE] += 1
    return names[ibuf[3]] if ibuf[3] >= 0 else None

def fits(demand, free):
    """True when every kind ``demand`` asks for (> 0) is in ``free`` within ``EPS``."""
    _counts[_FITS] += 1
    return _fits_map(demand, free)


def prefer(held):
    """The node holding the most of a task's input; see ``sched_py.prefer``."""
    _counts[_PREFER] += 1
    cdef object best = None
    cdef double most = 0.0, q
    cdef Py_ssize_t i = 0
    for node, value in held.items():
        if type(node) is not str:
            raise item_error("held", i, node, "is not a node name (str)")
        q = _number(value, "held", i, False)
        if best is None or q > most or (q == most and node > best):
            best = node
            most = q
        i += 1
    return best


def take(free, demands):
    """Which demands a node's free resources take, in order; see ``sched_py.take``."""
    cdef dict left = {}
    cdef list chosen = []
    cdef list need
    cdef Py_ssize_t i = 0
    cdef double q
    cdef bint ok, positive
    for kind, value in free.items():
        left[kind] = _quantity(value, "free", 0, kind)
    for demand in demands:
        positive = False
        for v in left.values():
            if <double>v > _EPS:
                positive = True
                break
        if not positive:
            break
        _counts[_TAKE] += 1
        need = []
        ok = True
        for kind, value in demand.items():
            q = _quantity(value, "demand", i, kind)
            if q < 0.0:
                raise quantity_error("demand", i, kind, value, "is negative; quantities are >= 0")
            if q > 0.0:
                need.append((kind, q))
                if <double>left.get(kind, 0.0) + _EPS < q:
                    ok = False
        if ok:
            chosen.append(i)
            for kind, qq in need:
                left[kind] = <double>left.get(kind, 0.0) - <double>qq
        i += 1
    return chosen


cdef int _below(object capacity, object load, double limit) except -1:
    cdef double q, have
    for kind, qty in capacity.items():
        q = qty
        if q > 0.0:
            have = load.get(kind, 0.0)
            if have > q * limit + _EPS:
                return False
    return True


def below_low_water(capacity, load, double window, double low_water):
    """Whether a node's window is due for a top-up; see ``sched_py.below_low_water``."""
    _counts[_WINDOW] += 1
    return bool(_below(capacity, load, window * low_water))


cdef class WindowFill:
    """One top-up pass over the nodes' dispatch windows; see ``sched_py.WindowFill``."""

    cdef readonly Py_ssize_t left
    cdef Py_ssize_t n_nodes, n_dims
    cdef dict index
    cdef double* cap          # n_nodes x n_dims, row-major
    cdef double* capw         # cap x window
    cdef double* room
    cdef double* top          # n_dims: the largest capw
    cdef double* want         # n_dims: scratch for pick
    cdef char* open_          # n_nodes: still taking part
    cdef double* budget       # n_nodes: seconds of queued work still allowed (NULL: unbounded)
    cdef double* saved        # n_dims: a room row kept by count
    # The last pick's node (-1: it chose none) and what it was asked (its need is ``want``):
    # ``count``/``follow``.
    cdef Py_ssize_t last, last_pin
    cdef int last_code
    cdef double last_secs

    def __cinit__(self, capacities, loads, window, low_water=None, budgets=None):
        cdef Py_ssize_t n, d, n_nodes = len(capacities), n_dims
        cdef double w, lim = 0.0
        cdef bint has_room
        if len(loads) != n_nodes:
            raise ValueError(f"loads has {len(loads)} entries but capacities has {n_nodes}")
        if budgets is not None and len(budgets) != n_nodes:
            raise ValueError(f"budgets has {len(budgets)} entries but capacities has {n_nodes}")
        w = float(window)
        if not w > 0.0:
            raise ValueError(f"window = {w!r}: it must be > 0")
        if low_water is not None:
            lim = w * <double>low_water
        dims = _kinds((capacities,))
        n_dims = len(dims)
        self.n_nodes = n_nodes
        self.n_dims = n_dims
        self.index = {kind: d for d, kind in enumerate(dims)}
        self.cap = <double*>calloc(n_nodes * n_dims + 1, sizeof(double))
        self.capw = <double*>calloc(n_nodes * n_dims + 1, sizeof(double))
        self.room = <double*>calloc(n_nodes * n_dims + 1, sizeof(double))
        self.top = <double*>calloc(n_dims + 1, sizeof(double))
        self.want = <double*>calloc(n_dims + 1, sizeof(double))
        self.open_ = <char*>calloc(n_nodes + 1, sizeof(char))
        self.saved = <double*>calloc(n_dims + 1, sizeof(double))
        self.last = -1
        if (
            self.cap == NULL or self.capw == NULL or self.room == NULL or self.top == NULL
            or self.want == NULL or self.open_ == NULL or self.saved == NULL
        ):
            raise MemoryError(f"window buffers for {n_nodes} nodes x {n_dims} kinds")
        if budgets is not None:
            self.budget = <double*>calloc(n_nodes + 1, sizeof(double))
            if self.budget == NULL:
                raise MemoryError(f"window budgets for {n_nodes} nodes")
            for n in range(n_nodes):
                self.budget[n] = _number(budgets[n], "budgets", n, True)
        _fill(capacities, self.index, n_dims, self.cap, "capacity", False)
        for n in range(n_nodes * n_dims):
            self.capw[n] = self.cap[n] * w
        for n in range(n_nodes):
            for d in range(n_dims):
                if self.capw[n * n_dims + d] > self.top[d]:
                    self.top[d] = self.capw[n * n_dims + d]
        self.left = 0
        for n in range(n_nodes):
            load = loads[n]
            has_room = False
            for d in range(n_dims):
                if self.cap[n * n_dims + d] > 0.0:
                    self.room[n * n_dims + d] = (
                        self.capw[n * n_dims + d] - <double>float(load.get(dims[d], 0.0))
                    )
                    if self.room[n * n_dims + d] > _EPS:
                        has_room = True
            if (
                has_room
                and (self.budget == NULL or self.budget[n] > 0.0)
                and (low_water is None or _below(capacities[n], load, lim))
            ):
                self.open_[n] = 1
                self.left += 1

    def __dealloc__(self):
        c_free(self.cap)
        c_free(self.capw)
        c_free(self.room)
        c_free(self.top)
        c_free(self.want)
        c_free(self.open_)
        c_free(self.budget)
        c_free(self.saved)

    def pick(self, need, Py_ssize_t pin, policy, seconds=0.0):
        """The node for one task (-1: none); see ``sched_py.WindowFill.pick``."""
        cdef int code = _policy(policy)
        cdef Py_ssize_t d, chosen, n_dims = self.n_dims
        cdef double q, secs
        cdef double* want = self.want
        cdef PyObject* p
        if not -1 <= pin < self.n_nodes:
            raise ValueError(f"pin = {pin!r}: -1 (any node) or a node index 0..{self.n_nodes - 1}")
        _counts[_WINDOW] += 1
        secs = _number(seconds, "seconds", 0, True)
        self.last = -1
        if self.budget != NULL and secs < 0.0:
            return -1  # unknown duration: not known to be short, never queued ahead
        memset(want, 0, n_dims * sizeof(double))
        for kind, value in need.items():
            q = _quantity(value, "need", 0, kind)
            p = PyDict_GetItem(self.index, kind)
            if p is NULL:
                if q > _EPS:
                    return -1  # a kind no node has
            else:
                want[<Py_ssize_t>(<object>p)] = q
        chosen = self._choose(pin, code)
        if chosen >= 0:
            self._take(chosen, secs)
            self.last = chosen
            self.last_pin = pin
            self.last_code = code
            self.last_secs = secs
        return chosen

    def count(self, Py_ssize_t limit):
        """Tasks more of the last pick's kind its node would take; see ``sched_py``'s."""
        cdef Py_ssize_t last = self.last, k = 0, n_dims = self.n_dims, d
        cdef double budget = 0.0
        cdef char is_open
        cdef Py_ssize_t left = self.left
        cdef double* room
        cdef double* saved = self.saved
        if last < 0:
            return 0
        room = self.room + last * n_dims
        for d in range(n_dims):
            saved[d] = room[d]
        if self.budget != NULL:
            budget = self.budget[last]
        is_open = self.open_[last]
        while k < limit and self._choose(self.last_pin, self.last_code) == last:
            self._take(last, self.last_secs)
            k += 1
        for d in range(n_dims):
            room[d] = saved[d]
        if self.budget != NULL:
            self.budget[last] = budget
        self.open_[last] = is_open
        self.left = left
        return k

    def follow(self, Py_ssize_t n, seconds=None):
        """``pick`` for ``n`` tasks more of the last pick's kind while they go to its node;
        see ``sched_py``'s."""
        cdef Py_ssize_t last = self.last, k = 0
        cdef double secs
        if last < 0:
            return 0
        while k < n:
            secs = self.last_secs if seconds is None else _number(seconds[k], "seconds", k, True)
            if self.budget != NULL and secs < 0.0:
                break
            if self._choose(self.last_pin, self.last_code) != last:
                break
            _counts[_WINDOW] += 1
            self._take(last, secs)
            k += 1
        return k

    cdef Py_ssize_t _choose(self, Py_ssize_t pin, int code):
        """The node ``pick`` chooses for ``want`` (-1: none); nothing changes."""
        cdef Py_ssize_t n, d, k, chosen = -1, n_dims = self.n_dims
        cdef double w, s, score, best = 0.0
        cdef double* room
        cdef double* cap
        cdef double* want = self.want
        cdef bint first, ok
        first = code == _FIRST_FIT or pin >= 0 or self.left == 1
        for n in range(self.n_nodes):
            if (pin >= 0 and n != pin) or not self.open_[n]:
                continue
            room = self.room + n * n_dims
            cap = self.cap + n * n_dims
            ok = True
            for d in range(n_dims):
                w = want[d]
                if w > 0.0 and (room[d] + _EPS < w or cap[d] + _EPS < w):
                    ok = False
                    break
            if not ok:
                continue
            if first:
                chosen = n
                break
            s = 0.0
            if code == _SPREAD:
                k = 0
                for d in range(n_dims):
                    if cap[d] > 0.0:
                        s = s + (room[d] - want[d]) / self.capw[n * n_dims + d]
                        k += 1
                score = -(s / <double>k) if k > 0 else 0.0
            else:
                for d in range(n_dims):
                    if cap[d] > 0.0:
                        s = s + (room[d] - want[d]) / self.top[d]
                score = s
            if chosen < 0 or score < best:
                chosen = n
                best = score
        return chosen

    cdef void _take(self, Py_ssize_t chosen, double secs):
        """A task of ``want`` and ``secs`` goes to ``chosen``: out of its room and budget."""
        cdef Py_ssize_t d, n_dims = self.n_dims
        cdef double* room = self.room + chosen * n_dims
        cdef double* cap = self.cap + chosen * n_dims
        cdef double* want = self.want
        cdef double share
        cdef bint has_room = False
        for d in range(n_dims):
            if cap[d] > 0.0:
                room[d] = room[d] - want[d]
                if room[d] > _EPS:
                    has_room = True
        if self.budget != NULL:
            share = 0.0
            for d in range(n_dims):
                if want[d] > 0.0 and cap[d] > 0.0 and want[d] / cap[d] > share:
                    share = want[d] / cap[d]
            self.budget[chosen] = self.budget[chosen] - secs * share
            if not self.budget[chosen] > 0.0:
                has_room = False
        if not has_room:
            self.open_[chosen] = 0
            self.left -= 1

def window_fill(capacities, loads, window, low_water=None, budgets=None):
    """A top-up pass over these nodes; see ``sched_py.WindowFill``."""
    return WindowFill(capacities, loads, window, low_water, budgets)

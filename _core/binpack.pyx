# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled placement core: place a batch of tasks on nodes, and order a DAG's tasks.

Design note
-----------
*Placement.* Each node gets a key computed from its free vector before any placement; the kernel
keeps the nodes sorted by (key, index) and takes the first feasible one. The key depends on the
policy, because the policies answer different questions:

  * ``binpack`` (best fit): ``key[n] = sum_d free[n, d] / scale[d]`` where ``scale[d]`` is the
    largest capacity of dim ``d`` across the nodes (dims no node has get weight 0: no division by
    zero); the feasible node with the *smallest* key wins. Best fit means "smallest leftover in
    absolute terms", so the cluster-wide normalisation is deliberate: (1) free amounts stay
    comparable across nodes of different sizes, so best fit really leaves the *big* node free for a
    big task later (per-node normalisation calls a half-empty small node and a half-empty huge node
    equally "full"); (2) the score after placing task ``t`` on ``n`` is ``key[n] - size(t)`` with
    ``size(t)`` independent of ``n``, so the ranking of nodes by after-placement free capacity is
    the same for every task.
  * ``spread`` (balance the load): ``key[n]`` = the node's free *fraction*, the mean over the dims
    the node has (``capacity[n, d] > 0``) of ``free[n, d] / capacity[n, d]`` (summed in dim order,
    then divided by the count of such dims; 0 for a node with no capacity at all); the feasible node
    with the *largest* key wins, i.e. the least loaded node relative to its own size. This is what a
    Ray/Dask user means by spread: with the global normalisation above, spread ranked nodes by
    absolute free capacity and sent every small task to the biggest node. The key is still
    task-independent, so the same sorted list works (it stores ``-key``). Every dim the node has
    counts, including ones the batch does not ask for: cpu-only tasks on {cpu 2, mem 2000} x 2 +
    {cpu 4, mem 8000} land 1 per node, then 2 per node for 6 (the idle memory keeps the small nodes'
    fraction at 0.5 even when their cpu is full).
  * ``first_fit``: key 0 for every node, so the feasible node with the lowest index wins.

Ties go to the lowest index under every policy.

That turns a per-task full scan (O(nodes x dims), 1e8 dim-ops for 1e5 tasks on 1e3 nodes) into a scan
of a list of live nodes kept sorted by (key, index): the first feasible node in the list is the
answer, and under best fit it is almost always among the first few (best fit fills one node at a
time). After a placement only that node's key changes, and it only moves one way (free only shrinks),
so it is re-slotted with a binary search and one ``memmove`` of the entries it passes. Two prunings
keep the scan short without changing any result:
  * a node whose free amount in some dim is below the smallest demand for that dim among the
    batch's unpinned tasks can take none of them and leaves the list for good;
  * when a scan finds no node, the per-dim maximum free over the list is recorded; free only shrinks,
    so a later task needing more than that in some dim is rejected in O(dims) without a scan.
Pinned tasks and feasible preferred nodes are checked directly (O(dims)), whatever the list says.

The pure-Python twin (``binpack_py``) does the naive full scan with the same floating-point
operations in the same order, so both backends return identical placements; the tests compare them.

*Ordering.* Upward ranks (own estimate + max over consumers' ranks) come from Kahn's algorithm run
from the sinks over the transposed consumers graph (iterative: 1e5+ tasks, no recursion limit); tasks
never reached lie on or behind a cycle, which is an error. The order is a ``qsort`` on
(priority desc, rank desc, size desc, index asc): keys are unique, so the order is deterministic.

The C kernels take raw pointers to row-major buffers, so two front ends share them: this module's
array functions (numpy in, validated by ``_checks``) and ``sched.pyx``'s scheduler-facing ones
(dicts and lists in, validated while copied, no numpy). This module imports numpy and ``_checks``
only on its first array call: importing it (``sched`` does) leaves a daemon numpy-free.
"""

from libc.stdint cimport int64_t
from libc.stdlib cimport free as c_free
from libc.stdlib cimport malloc, qsort
from libc.string cimport memmove
from libc.math cimport INFINITY

from ._consts import EPS, POLICIES, CycleError

__all__ = [
    "BACKEND",
    "EPS",
    "POLICIES",
    "CycleError",
    "order_tasks",
    "place_batch",
    "upward_ranks",
]

BACKEND = "cython"

cdef enum:
    _BINPACK = 0
    _SPREAD = 1
    _FIRST_FIT = 2

cdef double _EPS = EPS
# Stands in for the data pointer of an empty buffer (never read: every loop over it is empty).
cdef double _NO_DOUBLES[1]
cdef int64_t _NO_INTS[1]


cdef inline bint _fits(const double* need, const double* row, Py_ssize_t n_dims) noexcept nogil:
    cdef Py_ssize_t d
    for d in range(n_dims):
        if row[d] + _EPS < need[d]:
            return False
    return True


cdef inline double _key(
    const double* row, const double* cap, const double* inv, Py_ssize_t n_dims, int policy
) noexcept nogil:
    """Sort key of a node (free ``row``, capacity ``cap``): ascending = preferred first."""
    cdef double s = 0.0
    cdef Py_ssize_t d, k = 0
    if policy == _FIRST_FIT:
        return 0.0
    if policy == _SPREAD:
        # Free fraction: mean over the dims the node has of free / capacity; the largest goes first.
        for d in range(n_dims):
            if cap[d] > 0.0:
                s = s + row[d] / cap[d]
                k += 1
        return -(s / <double>k) if k > 0 else 0.0
    for d in range(n_dims):
        s = s + row[d] * inv[d]
    return s


cdef inline bint _before(double ka, Py_ssize_t na, double kb, Py_ssize_t nb) noexcept nogil:
    """(ka, na) sorts strictly before (kb, nb)."""
    return ka < kb or (ka == kb and na < nb)


cdef Py_ssize_t _find(const NodeKey* s, Py_ssize_t m, double k, Py_ssize_t n) noexcept nogil:
    """First index whose entry does not sort before (k, n)."""
    cdef Py_ssize_t lo = 0, hi = m, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if _before(s[mid].key, s[mid].node, k, n):
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef int _cmp_node(const void* a, const void* b) noexcept nogil:
    cdef const NodeKey* x = <const NodeKey*>a
    cdef const NodeKey* y = <const NodeKey*>b
    if _before(x.key, x.node, y.key, y.node):
        return -1
    if _before(y.key, y.node, x.key, x.node):
        return 1
    return 0


cdef Py_ssize_t place_kernel(
    const double* demand,
    double* free,
    const double* capacity,
    Py_ssize_t n_tasks,
    Py_ssize_t n_nodes,
    Py_ssize_t n_dims,
    const int64_t* order,
    Py_ssize_t n_order,
    const int64_t* pinned,
    const int64_t* preferred,
    int policy,
    int64_t* out,
    NodeKey* sorted_nodes,
    double* node_key,
    double* scratch,
) noexcept nogil:
    """Place ``order``'s tasks; ``scratch`` holds 3 x dims doubles. Returns the count placed."""
    cdef double* inv = scratch                   # 1 / largest capacity per dim (0: no capacity; binpack)
    cdef double* min_need = scratch + n_dims     # smallest demand per dim among unpinned tasks
    cdef double* bound = scratch + 2 * n_dims    # >= max free per dim over the live list
    cdef Py_ssize_t m = 0                        # live list length: sorted_nodes[:m]
    cdef Py_ssize_t i, j, d, n, t, p, q, chosen, placed = 0
    cdef double top, k_old, k_new, left
    cdef const double* need
    cdef double* row
    cdef const double* cap_row
    cdef bint hopeless, dead
    cdef NodeKey moved

    for t in range(n_tasks):
        out[t] = -1
    for d in range(n_dims):
        top = 0.0
        for n in range(n_nodes):
            if capacity[n * n_dims + d] > top:
                top = capacity[n * n_dims + d]
        inv[d] = 1.0 / top if top > 0.0 else 0.0
        min_need[d] = INFINITY
        bound[d] = INFINITY
    for i in range(n_order):
        t = order[i]
        if pinned[t] < 0:
            for d in range(n_dims):
                if demand[t * n_dims + d] < min_need[d]:
                    min_need[d] = demand[t * n_dims + d]
    # Live list: every node that could take some unpinned task, sorted by (key, index).
    for n in range(n_nodes):
        row = free + n * n_dims
        node_key[n] = _key(row, capacity + n * n_dims, inv, n_dims, policy)
        dead = False
        for d in range(n_dims):
            if row[d] + _EPS < min_need[d]:
                dead = True
                break
        if not dead:
            sorted_nodes[m].key = node_key[n]
            sorted_nodes[m].node = n
            m += 1
    qsort(sorted_nodes, m, sizeof(NodeKey), _cmp_node)

    for i in range(n_order):
        t = order[i]
        need = demand + t * n_dims
        chosen = -1
        p = -1                                   # position of chosen in the live list, if known
        if pinned[t] >= 0:
            n = pinned[t]
            if _fits(need, free + n * n_dims, n_dims):
                chosen = n
        elif preferred[t] >= 0 and _fits(need, free + preferred[t] * n_dims, n_dims):
            chosen = preferred[t]
        else:
            hopeless = False
            for d in range(n_dims):
                if bound[d] + _EPS < need[d]:
                    hopeless = True
                    break
            if not hopeless:
                for j in range(m):
                    n = sorted_nodes[j].node
                    if _fits(need, free + n * n_dims, n_dims):
                        chosen = n
                        p = j
                        break
                if chosen < 0:
                    for d in range(n_dims):
                        bound[d] = -INFINITY
                        for j in range(m):
                            if free[sorted_nodes[j].node * n_dims + d] > bound[d]:
                                bound[d] = free[sorted_nodes[j].node * n_dims + d]
        if chosen < 0:
            continue
        out[t] = chosen
        placed += 1
        row = free + chosen * n_dims
        cap_row = capacity + chosen * n_dims
        dead = False
        for d in range(n_dims):
            left = row[d] - need[d]
            row[d] = left if left > 0.0 else 0.0
            if row[d] + _EPS < min_need[d]:
                dead = True
        k_old = node_key[chosen]
        if p < 0:
            # Placed by pin or preference: find it in the live list, if it is there.
            p = _find(sorted_nodes, m, k_old, chosen)
            if p >= m or sorted_nodes[p].node != chosen:
                node_key[chosen] = _key(row, cap_row, inv, n_dims, policy)
                continue
        if dead:
            memmove(&sorted_nodes[p], &sorted_nodes[p + 1], (m - p - 1) * sizeof(NodeKey))
            m -= 1
            node_key[chosen] = _key(row, cap_row, inv, n_dims, policy)
            continue
        if policy == _FIRST_FIT:
            continue
        k_new = _key(row, cap_row, inv, n_dims, policy)
        node_key[chosen] = k_new
        moved.key = k_new
        moved.node = chosen
        if k_new < k_old:
            # Moves toward the front: slot q in [0, p], shift [q, p) one to the right.
            q = _find(sorted_nodes, p, k_new, chosen)
            memmove(&sorted_nodes[q + 1], &sorted_nodes[q], (p - q) * sizeof(NodeKey))
            sorted_nodes[q] = moved
        elif k_new > k_old:
            # Moves toward the back: the entries in (p, q] that sort before it shift left.
            q = p + 1 + _find(&sorted_nodes[p + 1], m - p - 1, k_new, chosen) - 1
            memmove(&sorted_nodes[p], &sorted_nodes[p + 1], (q - p) * sizeof(NodeKey))
            sorted_nodes[q] = moved
        else:
            sorted_nodes[p] = moved
    return placed


cdef Py_ssize_t place_buffers(
    const double* demand,
    double* free,
    const double* capacity,
    Py_ssize_t n_tasks,
    Py_ssize_t n_nodes,
    Py_ssize_t n_dims,
    const int64_t* order,
    Py_ssize_t n_order,
    const int64_t* pinned,
    const int64_t* preferred,
    int policy,
    int64_t* out,
) except -1 nogil:
    """``place_kernel`` with its scratch allocated here; -1 (MemoryError) when that fails."""
    cdef NodeKey* sorted_nodes = <NodeKey*>malloc((n_nodes + 1) * sizeof(NodeKey))
    cdef double* node_key = <double*>malloc((n_nodes + 1) * sizeof(double))
    cdef double* scratch = <double*>malloc((3 * n_dims + 1) * sizeof(double))
    cdef Py_ssize_t placed = -1
    if sorted_nodes != NULL and node_key != NULL and scratch != NULL:
        placed = place_kernel(
            demand, free, capacity, n_tasks, n_nodes, n_dims, order, n_order, pinned, preferred,
            policy, out, sorted_nodes, node_key, scratch,
        )
    c_free(sorted_nodes)
    c_free(node_key)
    c_free(scratch)
    if placed < 0:
        with gil:
            raise MemoryError(f"placement scratch for {n_nodes} nodes x {n_dims} dims")
    return placed


cdef inline const double* _doubles(const double[:, ::1] a) noexcept:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else _NO_DOUBLES


cdef inline const int64_t* _ints(const int64_t[::1] a) noexcept:
    return &a[0] if a.shape[0] > 0 else _NO_INTS


def place_batch(demand, free, capacity, order, pinned, preferred, policy="binpack", out=None):
    """Place tasks in ``order``; update ``free`` in place; return (node per task or -1, placed count)."""
    from ._checks import check_place

    dem_a, free_a, cap_a, order_a, pin_a, pref_a, code, out_a = check_place(
        demand, free, capacity, order, pinned, preferred, policy, out
    )
    cdef Py_ssize_t n_nodes = free_a.shape[0], n_dims = free_a.shape[1], placed
    cdef Py_ssize_t n_tasks = dem_a.shape[0], n_order = order_a.shape[0]
    cdef const double[:, ::1] dem_v = dem_a
    cdef double[:, ::1] free_v = free_a
    cdef const double[:, ::1] cap_v = cap_a
    cdef const int64_t[::1] order_v = order_a
    cdef const int64_t[::1] pin_v = pin_a
    cdef const int64_t[::1] pref_v = pref_a
    cdef int64_t[::1] out_v = out_a
    cdef int policy_code = code
    cdef const double* dem_p = _doubles(dem_v)
    cdef double* free_p = <double*>_doubles(free_v)
    cdef const double* cap_p = _doubles(cap_v)
    cdef const int64_t* order_p = _ints(order_v)
    cdef const int64_t* pin_p = _ints(pin_v)
    cdef const int64_t* pref_p = _ints(pref_v)
    cdef int64_t* out_p = <int64_t*>_ints(out_v)
    with nogil:
        placed = place_buffers(
            dem_p, free_p, cap_p, n_tasks, n_nodes, n_dims, order_p, n_order, pin_p, pref_p,
            policy_code, out_p,
        )
    return out_a, placed


cdef Py_ssize_t rank_kernel(
    const int64_t* indptr,
    const int64_t* indices,
    const double* estimate,
    Py_ssize_t n_tasks,
    double* rank,
    int64_t* remaining,
    int64_t* producer_ptr,
    int64_t* producers,
    int64_t* ready,
) noexcept nogil:
    """Upward ranks into ``rank``; returns how many tasks were ranked (< n_tasks: a cycle).
    Scratch: ``remaining`` and ``ready`` n_tasks, ``producer_ptr`` n_tasks + 1, ``producers``
    one per edge."""
    cdef Py_ssize_t t, c, e, top = 0, done = 0
    cdef double r
    # Transpose consumers -> producers (counting sort), and count each task's unranked consumers.
    for t in range(n_tasks + 1):
        producer_ptr[t] = 0
    for e in range(indptr[n_tasks]):
        producer_ptr[indices[e] + 1] += 1
    for t in range(n_tasks):
        producer_ptr[t + 1] += producer_ptr[t]
        remaining[t] = indptr[t + 1] - indptr[t]
        rank[t] = 0.0                            # until ranked: max over ranked consumers so far
    for t in range(n_tasks):
        for e in range(indptr[t], indptr[t + 1]):
            c = indices[e]
            producers[producer_ptr[c]] = t
            producer_ptr[c] += 1
    for t in range(n_tasks, 0, -1):
        producer_ptr[t] = producer_ptr[t - 1]
    producer_ptr[0] = 0
    for t in range(n_tasks):
        if remaining[t] == 0:
            ready[top] = t
            top += 1
    while top > 0:
        top -= 1
        c = ready[top]
        done += 1
        r = estimate[c] + rank[c]
        rank[c] = r
        for e in range(producer_ptr[c], producer_ptr[c + 1]):
            t = producers[e]
            if r > rank[t]:
                rank[t] = r
            remaining[t] -= 1
            if remaining[t] == 0:
                ready[top] = t
                top += 1
    return done


cdef int _cmp_task(const void* a, const void* b) noexcept nogil:
    cdef const TaskKey* x = <const TaskKey*>a
    cdef const TaskKey* y = <const TaskKey*>b
    if x.priority != y.priority:
        return -1 if x.priority > y.priority else 1
    if x.rank != y.rank:
        return -1 if x.rank > y.rank else 1
    if x.size != y.size:
        return -1 if x.size > y.size else 1
    if x.index != y.index:
        return -1 if x.index < y.index else 1
    return 0


cdef void sort_tasks(TaskKey* keys, Py_ssize_t n_tasks) noexcept nogil:
    """Sort by (priority desc, rank desc, size desc, index asc): unique keys, a deterministic order.
    Keys already in that order are left as they are after one pass of compares: the keys of a
    run whose tasks tie (independent ones of one priority and cost, as a big fan-out) come in
    index order, and the sort made ~n log n compares of them in the upload thread."""
    cdef Py_ssize_t i
    for i in range(1, n_tasks):
        if _cmp_task(&keys[i - 1], &keys[i]) > 0:
            qsort(keys, n_tasks, sizeof(TaskKey), _cmp_task)
            return


def _ranks(indptr_a, indices_a, est_a):
    import numpy as np

    from ._checks import cycle_error

    cdef Py_ssize_t n_tasks = est_a.shape[0], done
    rank = np.empty(n_tasks, dtype=np.float64)
    remaining = np.empty(n_tasks + 1, dtype=np.int64)
    producer_ptr = np.empty(n_tasks + 1, dtype=np.int64)
    producers = np.empty(indices_a.shape[0] + 1, dtype=np.int64)
    ready = np.empty(n_tasks + 1, dtype=np.int64)
    cdef const int64_t[::1] ptr_v = indptr_a
    cdef const int64_t[::1] idx_v = indices_a
    cdef const double[::1] est_v = est_a
    cdef double[::1] rank_v = rank
    cdef int64_t[::1] rem_v = remaining
    cdef int64_t[::1] pp_v = producer_ptr
    cdef int64_t[::1] prod_v = producers
    cdef int64_t[::1] ready_v = ready
    cdef const double* est_p = &est_v[0] if n_tasks > 0 else _NO_DOUBLES
    cdef double* rank_p = &rank_v[0] if n_tasks > 0 else _NO_DOUBLES
    cdef const int64_t* idx_p = _ints(idx_v)
    with nogil:
        done = rank_kernel(
            &ptr_v[0], idx_p, est_p, n_tasks, rank_p, &rem_v[0], &pp_v[0], &prod_v[0],
            &ready_v[0],
        )
    if done != n_tasks:
        raise cycle_error(remaining[:n_tasks])
    return rank


def upward_ranks(indptr, indices, estimate):
    """rank[t] = estimate[t] + max(rank[c] for c consuming t's output), 0 for no consumers."""
    from ._checks import check_graph

    return _ranks(*check_graph(indptr, indices, estimate))


def order_tasks(priority, indptr, indices, estimate, size):
    """Order tasks by priority desc, upward rank desc, size desc, index asc; return (order, ranks)."""
    import numpy as np

    from ._checks import check_graph, check_order_keys

    indptr_a, indices_a, est_a = check_graph(indptr, indices, estimate)
    prio_a, size_a = check_order_keys(priority, size, est_a.shape[0])
    rank = _ranks(indptr_a, indices_a, est_a)
    cdef Py_ssize_t n_tasks = est_a.shape[0], t
    order = np.empty(n_tasks, dtype=np.int64)
    cdef const int64_t[::1] prio_v = prio_a
    cdef const double[::1] size_v = size_a
    cdef const double[::1] rank_v = rank
    cdef int64_t[::1] order_v = order
    cdef TaskKey* keys = <TaskKey*>malloc((n_tasks + 1) * sizeof(TaskKey))
    if keys == NULL:
        raise MemoryError(f"ordering scratch for {n_tasks} tasks")
    try:
        with nogil:
            for t in range(n_tasks):
                keys[t].priority = prio_v[t]
                keys[t].rank = rank_v[t]
                keys[t].size = size_v[t]
                keys[t].index = t
            sort_tasks(keys, n_tasks)
            for t in range(n_tasks):
                order_v[t] = keys[t].index
    finally:
        c_free(keys)
    return order, rank

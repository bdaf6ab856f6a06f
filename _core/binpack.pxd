# The compiled placement core's C-level contract (see binpack.pyx for the design note); sched.pyx
# cimports it. Change this file, binpack.pyi and binpack_py.py in the same commit as binpack.pyx.
# Buffers are row-major and C-contiguous: demand[t * n_dims + d], free[n * n_dims + d].
from libc.stdint cimport int64_t

cdef struct NodeKey:
    double key          # sort key: normalised free (binpack), -free fraction (spread), 0 (first_fit)
    Py_ssize_t node     # node index: the tie-break, lowest first

cdef struct TaskKey:
    int64_t priority    # higher first
    double rank         # upward rank, higher first
    double size         # higher first
    Py_ssize_t index    # lower first; makes every key unique, so qsort's instability is harmless

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
) noexcept nogil

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
) except -1 nogil

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
) noexcept nogil

cdef void sort_tasks(TaskKey* keys, Py_ssize_t n_tasks) noexcept nogil

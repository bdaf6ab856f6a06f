# The compiled placement core's C-level contract (see binpack.pyx for the design note).
# Change this file, binpack.pyi and binpack_py.py in the same commit as binpack.pyx.
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
    const double[:, ::1] demand,
    double[:, ::1] free,
    const double[:, ::1] capacity,
    const int64_t[::1] order,
    const int64_t[::1] pinned,
    const int64_t[::1] preferred,
    int policy,
    int64_t[::1] out,
    NodeKey* sorted_nodes,
    double* node_key,
    double* scratch,
) noexcept nogil

cdef Py_ssize_t rank_kernel(
    const int64_t[::1] indptr,
    const int64_t[::1] indices,
    const double[::1] estimate,
    double[::1] rank,
    int64_t[::1] remaining,
    int64_t[::1] producer_ptr,
    int64_t[::1] producers,
    int64_t[::1] ready,
) noexcept nogil

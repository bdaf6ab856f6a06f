# cython: language_level=3
# Types for owner_queries.py (the base of OwnerScheduler, compiled with owner.pxd): the parts the
# scheduler composes, as C fields.

from handoffd.scheduler.cluster_view cimport ClusterView
from handoffd.scheduler.run cimport MoveListener


cdef class OwnerQueries(MoveListener):
    cdef public ClusterView _view
    cdef public object _owned
    cdef public object _lost

# cython: language_level=3
# Types for lane_entry.py, compiled beside it (as successes.pxd): a one-task run's placement reads
# the scheduler's, the view's, the queue's and the record's C fields, as the pass it stands for.

cimport cython

from handoffd.scheduler cimport cluster_view as cv
from handoffd.scheduler.cluster_view cimport ClusterView
from handoffd.scheduler.owner cimport OwnerScheduler
from handoffd.scheduler.ready cimport ReadyQueue
from handoffd.scheduler.room_index cimport RoomIndex
from handoffd.scheduler.run cimport RunState, TaskRecord


@cython.locals(run_id=object, changed=object, tell=object)
cpdef list submit_one(OwnerScheduler sched, object events, double now)
@cython.locals(
    ready=ReadyQueue, run=RunState, rec=TaskRecord, view=ClusterView, rooms=RoomIndex, room=dict,
    free=dict, need=dict, anything=bint, most=dict, total=dict, f=dict, held=dict, chosen=object
)
cpdef bint _place_one(OwnerScheduler sched, str run_id)

"""handoffd.scheduler: the owner's scheduler, a pure state machine (events in, instructions out).

``owner.OwnerScheduler`` takes the events (``events``) and keeps every decision about a task; it is
composed of parts, each with its own state, that it builds and wires with what they need:
``owned`` (the runs it owns), ``cluster_view`` (nodes, outstanding demand, unanswered dispatches,
the placement pass through ``placement``), ``ready`` (the ready queue), ``delays`` (tasks held back
after a refusal or an error), ``lost`` (messages lost while a node stays ALIVE), ``takeover``
(adopting a replicated run) and ``outbox`` (the instructions of one call). ``run.RunState`` is one
run's task state machine over its graph (``graph``).
"""

# The modules built with Cython from their .py and the .pxd beside it (setup.py SCHEDULER_COMPILED
# and the Makefile's check list the same names: they run before the package can be imported).
COMPILED = (
    "durations",
    "run",
    "ready",
    "demand",
    "fill_passes",
    "cluster_view",
    "owner_queries",
    "owner_books",
    "owner",
    "history",
    "history_kept",
    "rebalance",
    "run_snapshot",
    "run_losses",
    "room_index",
    "room_view",
    "lost",
    "placement",
    "outbox",
    "delays",
    "fitness",
    "successes",
    "plain_graph",
    "lane_entry",
    "release",
    "owned",
    "retention",
)

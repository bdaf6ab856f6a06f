"""Extension modules only; all metadata is in pyproject.toml.

The compiled placement core lives in top-level ``_core/`` and installs as ``handoffd._core``.
``handoffd/_core`` is a committed symlink to ``../_core``, for two reasons: setuptools' editable
finder maps only top-level packages (``handoffd`` -> ``handoffd/``) and ignores the nested
``package-dir`` entry, so without it ``import handoffd._core`` fails in ``pip install -e``; and
Cython looks up ``binpack.pxd`` for the module ``handoffd._core.binpack`` at
``<package root>/handoffd/_core/binpack.pxd``. Wheels still take the sources from ``_core/`` through
``package-dir``.
With HANDOFFD_REQUIRE_CYTHON=1 (CI and ``make``) a missing Cython is a build error, never a
silent fall-back to the pure-Python twin.
"""

import os

from setuptools import setup

#: C optimisation level of every extension. HANDOFFD_OPT_LEVEL=0 builds ~4x faster (the wheel test
#: uses it: it checks packaging and installation, while ``make build`` compiles the same sources at
#: -O3 in the same CI run); benchmarks and users get -O3.
OPT_LEVEL = os.environ.get("HANDOFFD_OPT_LEVEL", "3")
if OPT_LEVEL not in ("0", "1", "2", "3"):
    raise SystemExit(f"handoffd: HANDOFFD_OPT_LEVEL must be 0, 1, 2 or 3, not {OPT_LEVEL!r}")
OPT_FLAGS = [f"-O{OPT_LEVEL}"]

#: The owner's hot scheduler modules compiled from their .py with the .pxd beside it (the Makefile
#: checks each is an extension module after ``make build``): durations (learned estimates), run
#: (task records, a run's moves), ready (the ready queue), demand (outstanding demand, work,
#: unanswered dispatches), fill_passes (the placement pass's window and wave fills), cluster_view
#: (the placement pass).
SCHEDULER_COMPILED = (
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
#: The SWIM machine and its simulator (issue 20: 1,000 simulated nodes handle ~17,000 events a
#: virtual second), compiled from their .py with the .pxd beside records, probing, swim and sim;
#: tests/unit/test_membership_builds.py holds them to their .py.
MEMBERSHIP_COMPILED = ("swim", "probing", "records", "gossip", "lifeguard", "sim")
#: The owner's read of another node's report message (one pass a message, a typed loop over its
#: values), compiled from its .py with the .pxd beside it; tests/unit/test_report_read.py holds
#: it to its .py. The owner's pack of a log batch's rows into columns (one typed pass over the
#: rows), the same way; tests/unit/test_log_columns.py holds it to its .py. The cut of a whole
#: upload's frames (``frames_cut``: a small frame copied, no view a frame) the same way;
#: tests/unit/test_frames_cut.py holds it to its .py.
#: The read of a request that repeats the last one but for its ids and the write of a reply the
#: same way (``repeats``) too; tests/unit/test_codec_repeats.py and test_reply_repeats.py hold it
#: to its .py.
PROTOCOL_COMPILED = ("report_read", "log_pack", "frames_cut", "repeats")
#: The client's build of a plain DAG's submission columns (one loop over the user's functions,
#: W1's serial start), compiled from its .py with the .pxd beside it;
#: tests/unit/test_dag_columns.py holds it to its .py.
#: The local socket's cut and join of a one-task execute's two-frame messages, on both of its ends
#: (``transport.local_frames``, by dotted name), the same way;
#: tests/unit/test_local_socket_framing.py and tests/cluster/test_local_frames_ends.py hold it to
#: its .py.
CLIENT_COMPILED = ("dag_columns", "transport.local_frames")
#: The executing side's read of a block of KEPT replies (``worker._kept``), its ends (two C loops
#: a block, no Python step a task) and the store's hold of a block's values, compiled from their
#: .py with the .pxd beside each, by dotted name; tests/unit/test_kept_block.py,
#: test_replies_block.py and test_store_put_all.py hold them to their .py. The owner's
#: replication log's loop over a block of moves (``replication.log_blocks``) the same way;
#: tests/unit/test_log_blocks.py holds it to its .py. The pool's test of a run's payloads for its HEADED
#: form (``worker._heads``): tests/unit/test_worker_heads.py.
EXECUTOR_COMPILED = (
    "daemon.executor_block",
    "daemon.executor_rows",
    "store.block",
    "worker._kept",
    "worker._heads",
    "replication.log_blocks",
)

#: HANDOFFD_C_GENERATED=1: compile the extensions from the C files Cython already generated beside
#: their sources (an earlier build of the same sources), without running Cython again.
#: tests/daemons/test_wheel.py builds its wheel this way from the C of ``make build`` when that C
#: is current (Cython's own dependency check), so the test's build does not repeat Cython's minute
#: of CPU; a missing C file is an error here, never a silent Cython run.
C_GENERATED = os.environ.get("HANDOFFD_C_GENERATED", "0") == "1"


def _from_generated_c(extensions, **_cython_options):
    """``cythonize``'s result without Cython: each extension's .py/.pyx source replaced by the
    C file beside it, which must exist."""
    for ext in extensions:
        sources = []
        for source in ext.sources:
            base, suffix = os.path.splitext(source)
            if suffix in (".py", ".pyx"):
                source = base + ".c"
                if not os.path.isfile(source):
                    raise SystemExit(f"handoffd: HANDOFFD_C_GENERATED=1 but {source} is missing")
            sources.append(source)
        ext.sources = sources
    return extensions


try:
    import numpy
    from Cython.Build import cythonize
except ImportError as exc:  # pragma: no cover - exercised only on broken build environments
    if os.environ.get("HANDOFFD_REQUIRE_CYTHON", "0") == "1":
        raise SystemExit(
            f"handoffd: the compiled core needs Cython and numpy at build time ({exc}); "
            "install them or unset HANDOFFD_REQUIRE_CYTHON to build the pure-Python core only"
        ) from exc
    ext_modules = []
else:
    from setuptools import Extension

    if C_GENERATED:
        cythonize = _from_generated_c  # noqa: F811
    ext_modules = cythonize(
        [
            Extension(
                f"handoffd._core.{name}",
                [f"_core/{name}.pyx"],
                include_dirs=[numpy.get_include()],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                extra_compile_args=OPT_FLAGS,
            )
            # binpack: the array kernels; ranking: a run's task order (cimports binpack); cells:
            # the readers of resource maps; sched: the scheduler's kernels over dicts (cimports
            # all); reap: the worker's look for a child a job left (one system call, no ctypes)
            for name in ("binpack", "ranking", "cells", "sched", "reap")
        ],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ) + cythonize(
        [
            # Per-task hot state of the owner, compiled from the .py with the .pxd beside it; the
            # .py is the pure-Python build of the same module when there is no compiler.
            Extension(
                f"handoffd.scheduler.{name}",
                [f"handoffd/scheduler/{name}.py"],
                extra_compile_args=OPT_FLAGS,
            )
            for name in SCHEDULER_COMPILED
        ]
        + [
            Extension(
                f"handoffd.membership.{name}",
                [f"handoffd/membership/{name}.py"],
                extra_compile_args=OPT_FLAGS,
            )
            for name in MEMBERSHIP_COMPILED
        ]
        + [
            Extension(
                f"handoffd.protocol.{name}",
                [f"handoffd/protocol/{name}.py"],
                extra_compile_args=OPT_FLAGS,
            )
            for name in PROTOCOL_COMPILED
        ]
        + [
            Extension(
                f"handoffd.{name}",
                [f"handoffd/{name.replace('.', '/')}.py"],
                extra_compile_args=OPT_FLAGS,
            )
            for name in CLIENT_COMPILED
        ]
        + [
            Extension(
                f"handoffd.{name}",
                [f"handoffd/{name.replace('.', '/')}.py"],
                extra_compile_args=OPT_FLAGS,
            )
            for name in EXECUTOR_COMPILED
        ],
        # Python's semantics kept (the .py is the reference): bounds and negative indices
        # checked, division by zero raises.
        compiler_directives={"language_level": "3"},
    )

setup(ext_modules=ext_modules)

"""Run ``python -m MODULE ARGS...`` under cProfile and write the stats to ``OUT`` when it exits
(a daemon stopped with SIGTERM exits normally): ``python cprofile_exec.py OUT -- python -m MODULE
ARGS...`` (the shape ``DaemonCluster.start(wrap=...)`` gives). Used by ``bench/profile_daemon.py``."""

from __future__ import annotations

import cProfile
import os
import runpy
import sys
import time


def main() -> None:
    out, sep, *command = sys.argv[1:]
    if sep != "--" or len(command) < 3 or command[1] != "-m":
        sys.exit("usage: cprofile_exec.py OUT -- python -m MODULE ARGS...")
    module = command[2]
    sys.argv = [module, *command[3:]]
    # HANDOFFD_PROFILE_TIMER=thread: the loop thread's CPU time, not the wall clock (a process
    # descheduled on a busy machine would charge the wait to whatever call it was in)
    timer = os.environ.get("HANDOFFD_PROFILE_TIMER", "")
    profile = cProfile.Profile(time.thread_time) if timer == "thread" else cProfile.Profile()
    try:
        profile.runcall(runpy.run_module, module, run_name="__main__", alter_sys=True)
    finally:
        profile.dump_stats(out)


if __name__ == "__main__":
    main()

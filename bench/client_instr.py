"""The client's instructions per W3 call (issue 13, W3): callgrind on the client process only.

    .venv/bin/python bench/client_instr.py [--calls 1000] [--base 200] [--keep DIR]

Runs this script twice under ``valgrind --tool=callgrind`` (inside ``unshare -n``, loopback only,
as the peer benchmark does): each starts the peer benchmark's 2 daemons (which run natively:
valgrind does not follow children), makes 300 warm one-task ``execute`` calls as W3 does, then
``--base`` calls in one run and ``--base + --calls`` in the other. It prints the difference of
the two runs' instruction totals divided by ``--calls``: the client's user-space instructions a
call, set-up cancelled, repeatable to ~0.5 % whatever the machine's load (the kernel's share of
a call is not counted). ``--keep DIR`` keeps both callgrind files for ``callgrind_annotate``.
Run it from a neutral directory with a copy of bench/ (the cwd's modules are shipped).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def child(calls: int) -> None:
    from _peers.common import Sizes, noop
    from _peers.handoffd_runner import HandoffdRunner

    import handoffd

    runner = HandoffdRunner(Sizes(True))
    runner.start()
    client = runner.client

    def call(i: int) -> None:
        dag = handoffd.DAG().add_function(handoffd.Function(id="one", code=noop, extra_args=[i]))
        assert client.execute(dag) == {"one": i}

    try:
        for i in range(300 + calls):
            call(i)
    finally:
        runner.close()


def refs(calls: int, out: str) -> int:
    """The instruction total of one run of ``calls`` measured calls."""
    if shutil.which("valgrind") is None or shutil.which("unshare") is None:
        sys.exit("client_instr: needs valgrind and unshare")
    cmd = ["unshare", "--user", "--map-root-user", "-n"] if os.geteuid() else ["unshare", "-n"]
    inner = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
    cmd += ["sh", "-c", 'ip link set lo up && exec "$0" "$@"', *inner]
    cmd += [os.path.abspath(__file__), "--child", str(calls)]
    env = dict(os.environ, BENCH_PEERS_NETNS="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode or found is None:
        sys.exit(f"client_instr: the run of {calls} calls failed:\n{done.stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--base", type=int, default=200)
    parser.add_argument("--keep", default="", help="keep the callgrind files in this directory")
    args = parser.parse_args()
    where = args.keep or tempfile.mkdtemp(prefix="client_instr.")
    os.makedirs(where, exist_ok=True)
    low = refs(args.base, os.path.join(where, f"callgrind.{args.base}"))
    high = refs(args.base + args.calls, os.path.join(where, f"callgrind.{args.base + args.calls}"))
    if not args.keep:
        shutil.rmtree(where, ignore_errors=True)
    print(f"client instructions per W3 call: {(high - low) / args.calls:,.0f}")
    print(f"  ({high:,} - {low:,}) / {args.calls}")


if __name__ == "__main__":
    main()

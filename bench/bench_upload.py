"""Big submissions in pieces (issue 19): what sending a DAG as 1 MiB pieces costs, and that DAGs a
daemon could not take whole now go through.

One real daemon with default limits. Per size N: a DAG of N independent tasks is submitted (the
time to the owner's RunAccepted), then cancelled. "whole" sends it as one message (the upload
thresholds raised for that submission only; past the daemon's limits it is dropped, which shows as
"refused"), "pieces" as the client does by default. Printed: seconds per mode and their ratio, in
one run, alternating.

    .venv/bin/python bench/bench_upload.py [--sizes 20000,50000,200000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import handoffd
from handoffd import upload
from handoffd.errors import HandoffError
from handoffd.testing import DaemonCluster


def dag_of(n: int) -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(n):
        dag.add_function(handoffd.Function(id=f"t{i}", code=abs, extra_args=[-i]))
    return dag


def submit(client: handoffd.Client, dag: handoffd.DAG, whole: bool) -> float:
    saved = upload.BODY_PAST, upload.FRAMES_PAST, upload.FRAME_PAST
    timeout = client.timeout
    if whole:  # a dropped message is only noticed when the answer is late: do not wait long
        client.timeout = 20.0
        upload.BODY_PAST = upload.FRAMES_PAST = upload.FRAME_PAST = 1 << 62
    try:
        start = time.perf_counter()
        try:
            run = client.submit(dag)
        except HandoffError:
            return float("nan")
        took = time.perf_counter() - start
        run.cancel()
        return took
    finally:
        upload.BODY_PAST, upload.FRAMES_PAST, upload.FRAME_PAST = saved
        client.timeout = timeout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="20000,50000,200000")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with DaemonCluster() as daemons:
        d = daemons.start(cpu=2, memory=4000)
        with handoffd.connect(d.address, timeout=120) as client:
            for n in (int(x) for x in args.sizes.split(",")):
                dag = dag_of(n)
                times: dict[str, list[float]] = {"whole": [], "pieces": []}
                for _ in range(args.repeat):
                    for mode in ("whole", "pieces"):
                        times[mode].append(submit(client, dag, mode == "whole"))
                whole = statistics.median(times["whole"])
                pieces = statistics.median(times["pieces"])
                shown = "refused" if whole != whole else f"{whole:.2f} s"
                ratio = "" if whole != whole else f"  pieces/whole x{pieces / whole:.2f}"
                print(f"{n:>8} tasks: whole {shown}, pieces {pieces:.2f} s{ratio}", flush=True)


if __name__ == "__main__":
    main()

"""Daemons started at the same moment, every one seeded with the first, which is started last (a
user starting every machine at once): from the daemons' own logs, how long after the last one was
up each had every other ALIVE. Real ``handoffd start`` processes on loopback (DaemonCluster).

    python bench/join_at_once.py --daemons 5 --rounds 3 [-- --timings loaded]
"""

from __future__ import annotations

import argparse
import datetime

from handoffd.testing import DaemonCluster, free_port, wait_for


def _stamp(line: str) -> float:
    return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def one_round(n: int, extra: list[str]) -> str:
    with DaemonCluster() as cluster:
        port = free_port()
        seed = f"127.0.0.1:{port}"
        group = [
            cluster.start(seeds=[seed], name=f"s{i}", wait=False, extra=extra) for i in range(1, n)
        ]
        group.append(cluster.start(port=port, name="s0", wait=False, extra=extra))
        cluster.started(*group)
        wait_for(
            lambda: all(d.log().count("-> ALIVE") >= n - 1 for d in group),
            60,
            interval=0.05,
            what="every daemon sees every other ALIVE",
        )
        up: dict[str, float] = {}
        last: dict[str, float] = {}
        for d in group:
            for line in d.log().splitlines():
                if " up at " in line:
                    up[d.name] = _stamp(line)
                if "-> ALIVE" in line:
                    last[d.name] = _stamp(line)
        t_up = max(up.values())
        views = " ".join(f"{k}={last[k] - t_up:+.2f}" for k in sorted(last))
        return (
            f"N={n} up spread {t_up - min(up.values()):.2f} s; every other ALIVE, after the last "
            f"was up: {views} max={max(last.values()) - t_up:+.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--daemons", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="more `handoffd start` arguments (after --)")
    args = parser.parse_args()
    for _ in range(args.rounds):
        print(one_round(args.daemons, args.extra), flush=True)


if __name__ == "__main__":
    main()

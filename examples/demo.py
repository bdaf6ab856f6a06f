"""``make demo``: three daemons on 127.0.0.2-4 (one with a GPU), a DAG submitted with handoffctl,
results and placement printed, daemons stopped. Everything stays on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from handoffd.testing import DaemonCluster, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    resources = [
        dict(cpu=2, memory=4000, gpu=0),
        dict(cpu=2, memory=2000, gpu=1),
        dict(cpu=1, memory=2000, gpu=0),
    ]
    workdir = tempfile.mkdtemp(prefix="handoffd-demo-")
    cluster = DaemonCluster(cluster="demo", workdir=workdir)
    try:
        first = None
        print("starting 3 daemons on loopback (mDNS on each 127.0.0.N, plus a seed):")
        for index, (host, res) in enumerate(zip(hosts, resources, strict=False)):
            daemon = cluster.start(
                host=host, name=f"node{index + 1}", mdns=True, seeds=[first] if first else [], **res
            )
            first = first or daemon.address
            print(
                f"  node{index + 1} at {daemon.address}  cpu={res['cpu']} memory={res['memory']} gpu={res['gpu']}"
            )
        env = dict(os.environ, HANDOFFD_ADDRESS=cluster.daemons[0].address)
        ctl = [sys.executable, "-m", "handoffd.cli.ctl"]

        def all_alive() -> bool:
            out = subprocess.run(
                ctl + ["nodes"], env=env, capture_output=True, text=True, timeout=30
            )
            return out.returncode == 0 and out.stdout.count("ALIVE") == 3

        wait_for(all_alive, timeout=30, interval=0.2, what="3 ALIVE nodes")
        print("\n$ handoffctl nodes")
        subprocess.run(ctl + ["nodes"], env=env, check=True, timeout=30)
        print("\n$ handoffctl submit examples/pipeline.py")
        started = time.monotonic()
        code = subprocess.run(
            ctl + ["submit", os.path.join(HERE, "pipeline.py")], env=env, timeout=300
        ).returncode
        print(f"(handoffctl exited {code} after {time.monotonic() - started:.2f}s)")
        return code
    except Exception as exc:  # noqa: BLE001
        print(f"demo failed: {exc}\n{cluster.logs()}", file=sys.stderr)
        return 1
    finally:
        print("\nstopping the daemons (SIGTERM: drain and leave)")
        for daemon in cluster.daemons:
            try:
                daemon.terminate(timeout=20)
            except Exception:  # noqa: BLE001
                pass
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())

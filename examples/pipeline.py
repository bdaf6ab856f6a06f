"""A small numpy pipeline: generate data, fan out over shards, fan in, then a GPU-costed step.

Submit it with ``handoffctl submit examples/pipeline.py`` (``make demo`` does). The functions here
travel by value: the daemons need no copy of this file.
"""

import os

import numpy as np

import handoffd

SHARDS = 6
ROWS = 20_000
FEATURES = 32


def make_shard(index):
    rng = np.random.default_rng(1000 + index)
    x = rng.normal(size=(ROWS, FEATURES))
    weights = np.linspace(-1.0, 1.0, FEATURES)
    y = x @ weights + rng.normal(scale=0.1, size=ROWS)
    return x, y


def gram(shard):
    x, y = shard
    return x.T @ x, x.T @ y, len(y)


def combine(*parts):
    xtx = sum(p[0] for p in parts)
    xty = sum(p[1] for p in parts)
    rows = sum(p[2] for p in parts)
    return xtx, xty, rows


def solve(stats):
    # Costed as a GPU task: the scheduler places it on the node that has one and hands it the
    # device through CUDA_VISIBLE_DEVICES. The arithmetic itself is numpy on the CPU here.
    xtx, xty, rows = stats
    coef = np.linalg.solve(xtx, xty)
    return {"coef": coef, "rows": rows, "device": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


def report(model, expected):
    error = float(np.max(np.abs(model["coef"] - expected)))
    return {
        "rows": model["rows"],
        "max_coef_error": round(error, 4),
        "ok": error < 0.01,
        "gpu_device": model["device"],
    }


def build_dag():
    dag = handoffd.DAG()
    for i in range(SHARDS):
        dag.add_function(
            handoffd.Function(
                id=f"shard{i}", code=make_shard, extra_args=[i], cost={"cpu": 1, "memory": 200}
            )
        )
        dag.add_function(
            handoffd.Function(
                id=f"gram{i}", code=gram, args=[f"shard{i}"], cost={"cpu": 1, "memory": 100}
            )
        )
    dag.add_function(
        handoffd.Function(id="combine", code=combine, args=[f"gram{i}" for i in range(SHARDS)])
    )
    dag.add_function(
        handoffd.Function(id="solve", code=solve, args=["combine"], cost={"cpu": 1, "gpu": 1})
    )
    dag.add_function(
        handoffd.Function(
            id="report", code=report, args=["solve"], extra_args=[np.linspace(-1.0, 1.0, FEATURES)]
        )
    )
    return dag


dag = build_dag()

if __name__ == "__main__":
    # Without a cluster, the same DAG runs locally.
    results = handoffd.run_local(build_dag(), max_workers=2)
    print(results["report"])

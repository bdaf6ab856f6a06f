"""A small numpy pipeline run on this machine: load -> normalise -> 4 feature shards (fan-out)
-> per-shard statistics -> merge (fan-in) -> report.

    python examples/local_pipeline.py

The ``if __name__ == "__main__":`` guard matters: worker processes are spawned and import this file.
"""

from __future__ import annotations

import numpy as np

import handoffd

SHARDS = 4


def load(rows: int, cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(loc=5.0, scale=2.0, size=(rows, cols))


def normalise(data: np.ndarray, *, clip: float) -> np.ndarray:
    centred = (data - data.mean(axis=0)) / data.std(axis=0)
    return np.clip(centred, -clip, clip)


def shard_features(data: np.ndarray, shard: int, shards: int) -> np.ndarray:
    """Pairwise products of this shard's columns: a stand-in for a costly feature step."""
    cols = np.array_split(np.arange(data.shape[1]), shards)[shard]
    block = data[:, cols]
    return np.einsum("ri,rj->rij", block, block).reshape(len(data), -1)


def shard_stats(features: np.ndarray) -> dict[str, float]:
    return {
        "features": float(features.shape[1]),
        "mean": float(features.mean()),
        "energy": float(np.square(features).sum()),
        "top_singular": float(np.linalg.svd(features[:512], compute_uv=False)[0]),
    }


def merge(stats: list[dict[str, float]]) -> dict[str, float]:
    return {
        "features": sum(s["features"] for s in stats),
        "energy": sum(s["energy"] for s in stats),
        "largest_singular": max(s["top_singular"] for s in stats),
    }


def build_dag() -> handoffd.DAG:
    dag = handoffd.new()
    dag.add_function(
        handoffd.Function(id="load", code=load, extra_args=[20_000, 32], kwargs={"seed": 7})
    ).add_function(
        handoffd.Function(id="normalise", code=normalise, args=["load"], kwargs={"clip": 3.0})
    )
    for shard in range(SHARDS):
        dag.add_function(
            handoffd.Function(
                id=f"features_{shard}",
                code=shard_features,
                args=["normalise"],
                extra_args=[shard, SHARDS],
                type="inline",  # recomputed inside its consumer: no big array is shipped back
            )
        ).add_function(
            handoffd.Function(id=f"stats_{shard}", code=shard_stats, args=[f"features_{shard}"])
        )
    dag.add_function(
        handoffd.Function(
            id="merge",
            code=merge,
            args=[f"stats_{shard}" for shard in range(SHARDS)],
            argument_inclusion="as_list",
            priority=1,
        )
    ).add_function(
        handoffd.Function(
            id="report",
            code=lambda merged, data: (
                f"{data.shape[0]} rows -> {merged['features']:.0f} features, "
                f"energy {merged['energy']:.4g}, largest singular value {merged['largest_singular']:.4g}"
            ),
            args=["merge", "normalise"],
        )
    )
    return dag


if __name__ == "__main__":
    dag = build_dag()
    dag.validate()
    print(dag)
    print("critical path:", dag.critical_path_length(), "functions")
    results = handoffd.run_local(dag, max_retries=1)
    for shard in range(SHARDS):
        print(f"stats_{shard}:", {k: round(v, 3) for k, v in results[f"stats_{shard}"].items()})
    print("report:", results["report"])

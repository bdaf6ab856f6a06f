"""handoffd.engines.ray on a real local Ray cluster, started inside a private network namespace
(``unshare -n``, loopback only) so Ray's processes cannot touch any real interface. Skipped when
Ray is not installed (it is in the ``bench`` extra) or namespaces cannot be made (needs root)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from docs_examples import run_page

pytestmark = [
    pytest.mark.timeout(420),
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed"),
    pytest.mark.skipif(
        shutil.which("unshare") is None or os.geteuid() != 0,
        reason="needs root and unshare for a private network namespace",
    ),
]

# A private network namespace with only loopback up; the interpreter (and Ray) run inside it.
NETNS = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']
# No usage reports, and no auth token written to the user's ~/.ray (the namespace is private).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}

SCRIPT = """
import json, os, sys
import ray
import handoffd
from handoffd import Argument, Function
from handoffd.engines import ray as on_ray


def add(*xs, bonus=0):
    return sum(xs) + bonus


def node():
    return ray.get_runtime_context().get_node_id()


def near(value):
    return (value, ray.get_runtime_context().get_node_id())


def fail_until(path, n):
    with open(path, "a") as f:
        f.write("x")
    tries = len(open(path).read())
    if tries <= n:
        raise RuntimeError(f"planned failure {tries}")
    return tries


def boom(x):
    raise KeyError(f"no such key {x}")


ray.init(num_cpus=2, resources={"fpga": 1}, include_dashboard=False)
here = ray.get_runtime_context().get_node_id()
out = {}
dag = handoffd.DAG()
dag.add_function(Function(id="a", code=add, extra_args=[1, 2], cost={"cpu": 1, "fpga": 1}))
dag.add_function(Function(id="half", code=lambda x: x / 2, args=["a"], type="inline", cost={}))
dag.add_function(Function(id="c", code=add, args=["a", "half"], kwargs={"bonus": 10}))
dag.add_function(Function(id="l", code=lambda xs, tag: (tag, xs), args=["a", "c"],
                          argument_inclusion="as_list", extra_args=["all"]))
dag.add_function(Function(id="pinned", code=node, node=here))
dag.add_function(Function(id="near", code=near, args=["pinned"], collocate_with="pinned"))
dag.add_function(Function(id="flaky", code=fail_until, extra_args=[sys.argv[1], 2], max_retries=3))
dag.add_function(Function(id="hooked", code=len,
                          args=[Argument("l", serialize=lambda v: json.dumps(v).encode(),
                                         deserialize=lambda b: json.loads(b))]))
out["results"] = on_ray.execute(dag)
out["here"] = here
bad = handoffd.DAG()
bad.add_function(Function(id="x", code=add, extra_args=[1]))
bad.add_function(Function(id="bad", code=boom, args=["x"]))
bad.add_function(Function(id="after", code=add, args=["bad"]))
try:
    on_ray.execute(bad, max_retries=1)
except handoffd.TaskFailed as err:
    out["error"] = [err.function_id, err.exc_type, err.attempts, err.exc_message]
try:
    gpu = handoffd.DAG()
    gpu.add_function(Function(id="g", code=add, node="no-such-node"))
    on_ray.execute(gpu)
except handoffd.ValidationError as err:
    out["pin_error"] = err.kind
ray.shutdown()
print("RESULT " + json.dumps(out))
"""


def run_in_netns(tmp_path, body: str) -> dict:
    script = tmp_path / "ray_script.py"
    script.write_text(textwrap.dedent(body))
    result = subprocess.run(
        [*NETNS, sys.executable, str(script), str(tmp_path / "tries")],
        capture_output=True,
        text=True,
        timeout=360,
        env={**os.environ, **RAY_ENV},
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def test_ray_engine_runs_the_dag_with_the_same_results(tmp_path):
    out = run_in_netns(tmp_path, SCRIPT)
    results = out["results"]
    assert results["a"] == 3 and results["c"] == 3 + 1.5 + 10
    assert results["l"] == ["all", [3, 14.5]]  # a tuple comes back as a list through JSON
    assert results["pinned"] == out["here"] and results["near"] == [out["here"], out["here"]]
    assert results["flaky"] == 3 and results["hooked"] == 2
    assert "half" not in results and "hooked:l:serialize" not in results
    function_id, exc_type, attempts, message = out["error"]
    assert (function_id, exc_type, attempts) == ("bad", "KeyError", 2)
    assert "no such key 1" in message
    assert out["pin_error"] == "unknown_node"


def test_engines_page_ray_example_runs(tmp_path):
    out = run_page("engines.md", tmp_path, RAY_ENV, timeout=360, fence="py", prefix=NETNS)
    assert "ray: 56" in out

"""Pins the public surface: handoffd.__all__ is the contract of DESIGN.md section 2.1 (so far)."""

from __future__ import annotations

import inspect

import handoffd

# Every error of the contract is a HandoffError.
ERRORS = (
    "ValidationError",
    "Unschedulable",
    "TaskFailed",
    "RunCancelled",
    "UnknownRun",
    "ConnectionError",
    "AuthenticationError",
    "Timeout",
)
# Grows as the contract lands (connect, Client, Run come with the client); never shrinks silently.
EXPECTED = {
    "DAG",
    "Function",
    "new",
    "function",
    "Ref",
    "Argument",
    "HookFailed",
    "ItemFailed",
    "run_local",
    "connect",
    "Client",
    "Run",
    "RunStatus",
    "NodeInfo",
    "HandoffError",
    *ERRORS,
    "__version__",
}


def test_all_is_pinned():
    assert set(handoffd.__all__) == EXPECTED
    assert len(handoffd.__all__) == len(set(handoffd.__all__))
    for name in handoffd.__all__:
        assert hasattr(handoffd, name), name


def test_errors_form_one_hierarchy():
    for name in ERRORS:
        assert issubclass(getattr(handoffd, name), handoffd.HandoffError), name


def test_contract_signatures():
    assert isinstance(handoffd.new(), handoffd.DAG)
    params = inspect.signature(handoffd.Function).parameters
    assert list(params) == [
        "id",
        "code",
        "args",
        "extra_args",
        "kwargs",
        "cost",
        "argument_inclusion",
        "node",
        "collocate_with",
        "type",
        "max_retries",
        "timeout",
        "priority",
        "parallelism",
        "batch_size",
        "batch_timeout",
        "init",
    ]
    run_local = inspect.signature(handoffd.run_local).parameters
    assert list(run_local) == ["dag", "max_workers", "max_retries"]
    assert run_local["max_workers"].default is None and run_local["max_retries"].default == 3
    assert "nodes" in inspect.signature(handoffd.DAG.validate).parameters
    error = handoffd.ValidationError("cycle", "a", "a -> a")
    assert (error.kind, error.function_id, error.message) == ("cycle", "a", "a -> a")

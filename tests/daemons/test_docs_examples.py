"""The runnable examples of the user docs (docs/decorator.md, ...) run against real daemons."""

from __future__ import annotations

import pytest
from docs_examples import run_page

pytestmark = pytest.mark.timeout(240)


def test_decorator_page_examples_run(shared_pair, tmp_path):
    a, _ = shared_pair
    out = run_page("decorator.md", tmp_path, {"HANDOFFD_ADDRESS": a.address})
    assert "13.5" in out and "6.0" in out


def test_arguments_page_examples_run(shared_pair, tmp_path):
    a, _ = shared_pair
    out = run_page("arguments.md", tmp_path, {"HANDOFFD_ADDRESS": a.address})
    assert "bytes on the wire" in out and "mean: 249999.75" in out
    assert "HookFailed: deserialize hook corrupt" in out
    # the scheduler placed "lines": hooks ran only when the value moved
    assert out.count("hook calls:") == 2 and "Traceback" not in out


def test_engines_page_dask_examples_run(tmp_path):
    pytest.importorskip("distributed")
    out = run_page("engines.md", tmp_path, {})
    assert out.splitlines()[-1] == "101"


def test_streaming_page_examples_run(shared_pair, tmp_path):
    a, _ = shared_pair
    out = run_page("streaming.md", tmp_path, {"HANDOFFD_ADDRESS": a.address})
    assert "embed#1" in out and "ItemFailed(13" in out
    assert "hooked pipeline ok" in out and "sent 2000 received 2000" in out

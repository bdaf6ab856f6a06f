"""A dispatch with a frame past a node's ``max_frame_bytes`` is refused, not dropped
(``daemon/oversize``), and that refusal fails the run at once (``FRAME_TOO_LARGE``)."""

from __future__ import annotations

from scheduler_harness import Cluster, dispatches, spec

from handoffd.daemon import dispatch, oversize, reports
from handoffd.scheduler import events as ev


def _dispatch(payloads: dict[str, bytes]) -> ev.Dispatch:
    items = tuple(
        ev.DispatchedTask(tid, 1, payload, {"cpu": 1.0}, "", None, (), 0, 0.0)
        for tid, payload in payloads.items()
    )
    return ev.Dispatch("n1", "r", 3, items)


def test_the_task_past_the_limit_is_named_and_the_others_placed_again() -> None:
    ins = _dispatch({"small": b"s" * 10, "big": b"b" * 5000, "tiny": b"t"})
    msg, frames = dispatch.dispatch_message(ins, "owner-addr", lambda name: name, ())
    refused = oversize.owner_refusal(msg, frames, 4096, "n1")
    assert refused is not None
    reasons = dict(zip(refused.refused_ids, refused.refused_reasons, strict=True))
    assert reasons["big"].startswith(ev.FRAME_TOO_LARGE)
    assert "5000 bytes" in reasons["big"] and "max_frame_bytes=4096 of node 'n1'" in reasons["big"]
    assert not reasons["small"].startswith(ev.FRAME_TOO_LARGE)
    assert oversize.owner_refusal(msg, frames, 8192, "n1") is None  # within the limit: sent


def test_a_frame_too_large_refusal_fails_the_run_naming_the_function() -> None:
    c = Cluster({"n1": 2})
    (d,) = dispatches(c.submit("r", [spec("big"), spec("other")]))
    msg, frames = dispatch.dispatch_message(
        _dispatch({"big": b"b" * 5000, "other": b"o"}), "owner-addr", lambda name: name, ()
    )
    refused = oversize.owner_refusal(msg, frames, 4096, "n1")
    assert refused is not None
    attempts = {item.task_id: item.attempt for item in d.items}
    assert attempts == {"big": 1, "other": 1}
    out = c.feed(reports.answered("n1", refused))
    (finished,) = [i for i in out if isinstance(i, ev.RunFinished)]
    assert finished.state == "FAILED" and finished.error is not None
    assert getattr(finished.error, "function_id", None) == "big"
    assert "max_frame_bytes=4096" in str(finished.error)

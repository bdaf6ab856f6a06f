"""A dispatch with a frame past a node's ``max_frame_bytes`` is refused, not dropped
(``daemon/oversize``), and that refusal fails the run at once (``FRAME_TOO_LARGE``); a frame past
``FAR_BYTES`` the owner can keep goes by reference instead (``store.chunks``), and one past its
``max_value_bytes`` is refused naming that limit."""

from __future__ import annotations

from scheduler_harness import Cluster, dispatches, spec

from handoffd.config import Limits
from handoffd.daemon import dispatch, oversize, reports
from handoffd.protocol import columns
from handoffd.scheduler import events as ev
from handoffd.store.chunks import FAR_BYTES, far_key


def _dispatch(payloads: dict[str, bytes]) -> ev.Dispatch:
    items = tuple(
        ev.DispatchedTask(tid, 1, payload, {"cpu": 1.0}, "", None, (), 0, 0.0)
        for tid, payload in payloads.items()
    )
    return ev.Dispatch("n1", "r", 3, items)


def test_the_task_past_the_limit_is_named_and_the_others_placed_again() -> None:
    ins = _dispatch({"small": b"s" * 10, "big": b"b" * 5000, "tiny": b"t"})
    msg, frames = dispatch.dispatch_message(ins, "owner-addr", lambda name: name, ())
    refused = oversize.owner_refusal(msg, frames, Limits(max_frame_bytes=4096), "n1")
    assert refused is not None
    reasons = dict(zip(refused.refused_ids, refused.refused_reasons, strict=True))
    assert reasons["big"].startswith(ev.FRAME_TOO_LARGE)
    assert "5000 bytes" in reasons["big"] and "max_frame_bytes=4096 of node 'n1'" in reasons["big"]
    assert not reasons["small"].startswith(ev.FRAME_TOO_LARGE)
    assert (
        oversize.owner_refusal(msg, frames, Limits(max_frame_bytes=8192), "n1") is None
    )  # within the limit: sent


def test_a_frame_too_large_refusal_fails_the_run_naming_the_function() -> None:
    c = Cluster({"n1": 2})
    (d,) = dispatches(c.submit("r", [spec("big"), spec("other")]))
    msg, frames = dispatch.dispatch_message(
        _dispatch({"big": b"b" * 5000, "other": b"o"}), "owner-addr", lambda name: name, ()
    )
    refused = oversize.owner_refusal(msg, frames, Limits(max_frame_bytes=4096), "n1")
    assert refused is not None
    attempts = {item.task_id: item.attempt for item in d.items}
    assert attempts == {"big": 1, "other": 1}
    out = c.feed(reports.answered("n1", refused))
    (finished,) = [i for i in out if isinstance(i, ev.RunFinished)]
    assert finished.state == "FAILED" and finished.error is not None
    assert getattr(finished.error, "function_id", None) == "big"
    assert "max_frame_bytes=4096" in str(finished.error)


def test_a_frame_past_far_bytes_goes_by_reference_and_is_sent() -> None:
    big = b"b" * (FAR_BYTES + 1)
    kept: dict[str, bytes] = {}

    def far(key: str, data: bytes) -> bool:
        kept[key] = data
        return True

    ins = _dispatch({"small": b"s" * 10, "big": big})
    msg, frames = dispatch.dispatch_message(ins, "owner-addr", lambda name: name, (), far)
    (ref,) = msg.far
    assert (ref.key, ref.size, ref.holder) == (far_key("p", "big"), len(big), "owner-addr")
    assert kept == {ref.key: big}
    logical = columns.split_frames(msg.frame_sizes, frames, "DispatchColumns")
    assert logical[ref.frame] == b"" and max(len(f) for f in frames) < FAR_BYTES
    assert oversize.owner_refusal(msg, frames, Limits(max_frame_bytes=1 << 20), "n1") is None
    back = columns.dispatch_items(msg)
    assert back.far == msg.far


def test_a_frame_past_the_value_limit_is_refused_naming_it() -> None:
    ins = _dispatch({"big": b"b" * 5000, "small": b"s"})
    msg, frames = dispatch.dispatch_message(ins, "owner-addr", lambda name: name, (), None)
    limits = Limits(max_frame_bytes=1 << 20, max_value_bytes=4096)
    refused = oversize.owner_refusal(msg, frames, limits, "n1")
    assert refused is not None
    reasons = dict(zip(refused.refused_ids, refused.refused_reasons, strict=True))
    assert reasons["big"].startswith(ev.FRAME_TOO_LARGE)
    assert "max_value_bytes=4096 of node 'n1'" in reasons["big"]
    assert "--limit max_value_bytes=BYTES" in reasons["big"]

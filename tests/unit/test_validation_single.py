"""``validation.check_graph`` of one function that needs nothing and is collocated with nothing
(every one-task ``execute``: the client checks it, then the owner) answers without the general
walk (references, pins, Kahn's order); anything else about a single function still goes the
general way, so its errors are the same."""

from __future__ import annotations

from typing import Any

import pytest

from handoffd import validation
from handoffd.errors import ValidationError


def _walk(links: Any, pins: bool) -> list[str]:
    """check_graph's general path, as it was before the shortcut."""
    validation.check_references(links)
    if pins:
        validation.check_collocation_pins(links)
    order = validation.topological(links)
    if len(order) != len(links):
        raise validation.cycle_error(links, order)
    return order


def _outcome(fn: Any, links: Any, pins: bool) -> tuple[str, Any]:
    try:
        return "order", fn(links, pins)
    except ValidationError as exc:
        return "error", (exc.kind, exc.function_id, str(exc))


@pytest.mark.parametrize("pins", [False, True])
def test_one_function_needing_nothing_takes_no_walk(
    monkeypatch: pytest.MonkeyPatch, pins: bool
) -> None:
    def walked(*_: Any) -> Any:
        raise AssertionError("the general walk ran for a one-function graph")

    for name in ("check_references", "check_collocation_pins", "topological"):
        monkeypatch.setattr(validation, name, walked)
    assert validation.check_graph({"one": ((), None, None, False)}, pins=pins) == ["one"]
    assert validation.check_graph({"one": ((), None, "n1", False)}, pins=pins) == ["one"]


@pytest.mark.parametrize("pins", [False, True])
@pytest.mark.parametrize(
    "links",
    [
        {"a": ((), None, None, False)},
        {"a": ((), None, "n1", False)},
        {"a": ((), None, None, True)},
        {"a": (("a",), None, None, False)},  # a self-dependency: a cycle
        {"a": (("b",), None, None, False)},  # an unknown dependency
        {"a": ((), "a", None, False)},  # collocated with itself
        {"a": ((), "b", None, False)},  # collocated with an unknown function
        {"a": ((), "a", "n1", True)},
    ],
)
def test_a_single_function_gets_what_the_walk_gives(links: Any, pins: bool) -> None:
    assert _outcome(validation.check_graph, links, pins) == _outcome(_walk, links, pins)

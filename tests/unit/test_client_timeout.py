"""connect(timeout=...): the seconds the client waits for each reply from its daemon. A value the
socket cannot wait for (infinite, NaN, zero, negative, not a number) is refused at connect with
what was wrong and what to pass, not later as a crash in the middle of a call."""

from __future__ import annotations

import math
from typing import Any

import pytest

from handoffd import errors
from handoffd.client import connect


@pytest.mark.parametrize("timeout", [math.inf, -math.inf, math.nan, 0, 0.0, -1.0, None, "5", True])
def test_a_timeout_the_socket_cannot_wait_for_is_refused_with_what_to_pass(timeout: Any) -> None:
    with pytest.raises(ValueError, match=r"connect\(timeout=.*positive, finite number"):
        connect("mem://no-such-network/n0", timeout=timeout)


@pytest.mark.parametrize("timeout", [5, 0.25, 1e6])
def test_a_positive_finite_timeout_is_taken(timeout: Any) -> None:
    # (past the check: the address is what fails then, a network nobody made)
    with pytest.raises(errors.ConnectionError):
        connect("mem://no-such-network/n0", timeout=timeout)

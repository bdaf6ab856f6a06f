"""The HTTP token: derived from the cluster key (or the user's local key), so whoever holds the
key that lets them talk to the daemon can open its dashboard, and nobody else. Pure."""

from __future__ import annotations

import hashlib
import hmac

_LABEL = b"handoffd http token v1"


def http_token(secret: bytes) -> str:
    """The token for a CURVE secret key (z85 bytes, as in the key file)."""
    return hmac.new(secret, _LABEL, hashlib.sha256).hexdigest()[:40]


def token_ok(expected: str | None, *offered: str | None) -> bool:
    """True when no token is needed (``expected`` None) or one of ``offered`` is it."""
    if expected is None:
        return True
    return any(
        o is not None and hmac.compare_digest(o.encode(), expected.encode()) for o in offered
    )


__all__ = ["http_token", "token_ok"]

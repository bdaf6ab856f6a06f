"""The cluster key file: one CURVE keypair shared by every node and client of a cluster.

Every ROUTER is a CURVE server with the cluster secret key and admits (via ZAP) only clients that
present the cluster public key; every DEALER uses the same keypair as its client keys and the
cluster public key as the server key. Holding the file is what membership means, so it is written
with mode 0600. Format: two lines, ``public: <z85>`` and ``secret: <z85>`` (40 characters each).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.utils import z85

from handoffd.errors import HandoffError

_HEADER = (
    "# handoffd cluster key (CURVE). Keep it secret: anyone holding it can run code on the cluster."
)


class KeyFileError(HandoffError):
    """The key file is missing, unreadable or malformed (the message says which and how to fix)."""


@dataclass(frozen=True)
class CurveKeys:
    public: bytes  # z85, 40 bytes
    secret: bytes  # z85, 40 bytes

    def __repr__(self) -> str:  # never print the secret
        return f"CurveKeys(public={self.public.decode()!r}, secret=<hidden>)"


def generate_key_file(path: str | os.PathLike[str], *, force: bool = False) -> CurveKeys:
    """Write a new cluster key to ``path`` (mode 0600); refuse to overwrite unless ``force``."""
    target = Path(path)
    public, secret = zmq.curve_keypair()
    text = f"{_HEADER}\npublic: {public.decode()}\nsecret: {secret.decode()}\n"
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"key file {target} already exists; refusing to overwrite it (every node holding the "
            "old key would be locked out). Remove it first or pass force=True."
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {target}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        os.fchmod(
            handle.fileno(), 0o600
        )  # O_CREAT's mode is masked by umask; force=True keeps old mode
        handle.write(text)
    return CurveKeys(public, secret)


def load_key_file(path: str | os.PathLike[str]) -> CurveKeys:
    """Read the cluster key from ``path``; raises KeyFileError with a clear message."""
    source = Path(path)
    try:
        text = source.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {source} does not exist; create one with `handoffctl keygen {source}` "
            "and copy it to every node"
        ) from None
    except UnicodeDecodeError:
        raise KeyFileError(
            f"key file {source} is not a handoffd key file (not ASCII text)"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {source}: {exc.strerror}") from None
    found: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or name not in ("public", "secret") or name in found:
            raise KeyFileError(
                f"key file {source}, line {number}: expected 'public: ...' or 'secret: ...'"
            )
        found[name] = value.encode("ascii")
    if set(found) != {"public", "secret"}:
        missing = " and ".join(sorted({"public", "secret"} - set(found)))
        raise KeyFileError(
            f"key file {source} has no {missing} key; regenerate it with `handoffctl keygen`"
        )
    for name, key in found.items():
        try:
            raw = z85.decode(key)
        except Exception:
            raw = b""
        if len(key) != 40 or len(raw) != 32:
            raise KeyFileError(
                f"key file {source}: the {name} key is not a 40-character z85 CURVE key"
            )
    if zmq.curve_public(found["secret"]) != found["public"]:
        raise KeyFileError(f"key file {source}: the public key does not belong to the secret key")
    return CurveKeys(found["public"], found["secret"])

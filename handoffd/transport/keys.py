"""The cluster key file: one CURVE keypair shared by every node and client of a cluster.

Every ROUTER is a CURVE server with the cluster secret key and admits (via ZAP) only clients that
present the cluster public key; every DEALER uses the same keypair as its client keys and the
cluster public key as the server key. Holding the file is what membership means, so it is written
with mode 0600, and one other users can read or write is refused (``insecure``: warned about).
A daemon without a cluster key uses the user's *local key* the same way (``ensure_local_key``).
Format: two lines, ``public: <z85>`` and ``secret: <z85>`` (40 characters each).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from zmq.utils import z85

from handoffd.errors import HandoffError

log = logging.getLogger("handoffd.keys")
_transport_log = logging.getLogger("handoffd.transport")  # (answer_zap's lines, as before)

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


def load_key_file(path: str | os.PathLike[str], *, insecure: bool = False) -> CurveKeys:
    """Read the cluster key from ``path``; raises KeyFileError with a clear message.

    A key file other users can read or write is refused (anyone who reads it can run code on the
    cluster; anyone who writes it can point our clients at a daemon of theirs), unless ``insecure``:
    then it is used with a warning."""
    source = Path(path)
    try:
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise KeyFileError(f"key file {source} is not a regular file")
            raw = handle.read(1 << 16)
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {source} does not exist; create one with `handoffctl keygen {source}` "
            "and copy it to every node"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {source}: {exc.strerror}") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(
            f"key file {source} is not a handoffd key file (not ASCII text)"
        ) from None
    keys = _parse(text, source)
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        if not insecure:
            raise KeyFileError(
                f"key file {source} has mode {mode:04o}: other users on this machine can read or "
                f"change it, and whoever reads it can run code on the cluster. Run `chmod 600 "
                f"{source}` (or pass --insecure to use it anyway)"
            )
        log.warning(
            "key file %s has mode %04o: other users can read or change it (used anyway: "
            "--insecure); run `chmod 600 %s`",
            source,
            mode,
            source,
        )
    return keys


def _parse(text: str, source: Path) -> CurveKeys:
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


# -- the local key -------------------------------------------------------------------------------
#
# A keyless daemon is not unauthenticated: it uses the user's local key as its cluster key, so only
# processes that can read the file (the user, root) can connect, and a client holding it refuses a
# server that cannot prove the same key (a port squatted by another local user).

LOCAL_KEY_NAME = "local.key"
_LOCAL_HEADER = (
    "# handoffd local key (CURVE): admits this user's clients to this user's keyless daemons. "
    "Never copy it."
)


def local_key_path(directory: str | None = None) -> str:
    """Where the local key of ``directory`` (default: this user's runtime dir) is."""
    from handoffd.runtime import runtime_dir

    return os.path.join(directory or runtime_dir(create=False), LOCAL_KEY_NAME)


def load_local_key(path: str) -> CurveKeys:
    """The local key at ``path``: FileNotFoundError if there is none, RuntimeDirError if it is not
    a 0600 file of ours, KeyFileError if it is malformed."""
    from handoffd.runtime import read_private

    raw = read_private(path, "the handoffd local key", secret=True)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"the handoffd local key {path} is not ASCII text; remove it") from None
    try:
        return _parse(text, Path(path))
    except KeyFileError as exc:
        raise KeyFileError(
            f"{exc}; remove the local key (a keyless daemon makes a new one)"
        ) from None


def ensure_local_key(directory: str, keys: CurveKeys | None = None) -> CurveKeys:
    """The local key of the (checked) runtime dir ``directory``, created if there is none yet (with
    ``keys`` if given). Daemons starting together race here: the key is written whole to a private
    temporary file (O_CREAT|O_EXCL, 0600) and hard-linked into place, which fails if another
    daemon got there first; the loser then reads the winner's file, never a half-written one."""
    path = os.path.join(directory, LOCAL_KEY_NAME)
    try:
        return load_local_key(path)
    except FileNotFoundError:
        pass
    public, secret = (keys.public, keys.secret) if keys is not None else zmq.curve_keypair()
    text = f"{_LOCAL_HEADER}\npublic: {public.decode()}\nsecret: {secret.decode()}\n"
    temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temporary, flags, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another daemon won the race: use its key
        finally:
            os.unlink(temporary)
    except OSError as exc:
        from handoffd.runtime import RuntimeDirError

        raise RuntimeDirError(f"cannot create the handoffd local key {path}: {exc}") from None
    return load_local_key(path)


REFUSED_TEXT = b"not a member of this cluster"  # the ZAP refusal, as peers see it


def zap_answer(request: list[bytes], cluster_public: bytes) -> tuple[list[bytes], bool] | None:
    """The ZAP reply to ``request`` and whether it admits the peer: CURVE clients whose public key
    is the cluster key, nobody else. None: not a ZAP request (only libzmq talks on that endpoint).
    Shared by the listening socket (``ZmqTransport``) and the probe port (``ProbeResponder``)."""
    if len(request) < 6:
        return None
    version, request_id, mechanism, credentials = request[0], request[1], request[5], request[6:]
    if mechanism == b"CURVE" and credentials and credentials[0] == cluster_public:
        return [version, request_id, b"200", b"OK", b"", b""], True
    return [version, request_id, b"400", REFUSED_TEXT, b"", b""], False


def answer_zap(zap: zmq.Socket[Any], cluster_public: bytes, refused: Callable[[], None]) -> None:
    """Answer the ZAP requests waiting on ``zap`` (``zap_answer``), without blocking; ``refused``
    is called for each peer refused (``ZmqTransport`` counts them), and each is logged."""
    while True:
        try:
            request = zap.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        answer = zap_answer(request, cluster_public)
        if answer is None:
            continue  # not a ZAP request; only libzmq talks on this endpoint
        reply, admitted = answer
        if not admitted:
            refused()
            _transport_log.warning(
                "refused a %s connection from %s: %s",
                request[5].decode(errors="replace"),
                request[3].decode(errors="replace"),
                reply[3].decode(),
            )
        try:
            zap.send_multipart(reply, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            _transport_log.warning("ZAP reply failed: %s", exc)

"""Which CURVE keys a daemon and a client use: the one place the policy lives.

Daemon: ``--key-file`` -> the cluster key. Without one, on a loopback host, the user's local key
(created on first use in the runtime dir), so only the user (and root) can connect, stop it or
submit code. ``--allow-local-users`` turns that off (no CURVE: any local user can connect and
impersonate it), and so does a non-loopback host without a key (``--insecure``: a local key is
private to one machine, so it could not admit the other hosts' nodes).

Client: ``key_file`` -> the cluster key; ``allow_local_users`` (or HANDOFFD_ALLOW_LOCAL_USERS=1)
-> no authentication; otherwise the local key, which must exist and be ours. The client also
uses the key as the server key, so whatever listens on the address must prove it holds the key
before one byte of its replies is read (nothing is ever unpickled from an impostor).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass

from handoffd.errors import AuthenticationError, HandoffError
from handoffd.transport.base import split_address
from handoffd.transport.keys import CurveKeys, ensure_local_key, load_key_file, local_key_path

log = logging.getLogger("handoffd.auth")

ALLOW_ENV = "HANDOFFD_ALLOW_LOCAL_USERS"
_OPT_IN = "pass --allow-local-users (allow_local_users=True, or HANDOFFD_ALLOW_LOCAL_USERS=1)"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def allow_local_users_env() -> bool:
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _whoami() -> str:
    uid = os.geteuid()
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def daemon_curve(
    *,
    key_file: str | None,
    insecure: bool,
    allow_local_users: bool,
    host: str,
    runtime_dir: str | None = None,
) -> CurveKeys | None:
    """The keys a daemon's transport gets (None: no CURVE), warning loudly when there are none."""
    if key_file:
        if allow_local_users:
            raise HandoffError(
                "--allow-local-users does nothing with --key-file (the cluster key decides who "
                "may connect); drop one of them"
            )
        return load_key_file(key_file, insecure=insecure)
    if allow_local_users:
        log.warning(
            "--allow-local-users: NO AUTHENTICATION. Every user of this machine can connect to "
            "this daemon and run code as %s, stop it, or listen on its address before it starts "
            "and feed your clients whatever they unpickle. Drop the flag to admit only holders of "
            "your local key.",
            _whoami(),
        )
        return None
    if not is_loopback(host):
        log.warning(
            "no --key-file on %s (--insecure): NO AUTHENTICATION. Anyone who can reach this "
            "address can run code as %s. Create a key with `handoffctl keygen KEY` and pass "
            "--key-file KEY to every node and client.",
            host,
            _whoami(),
        )
        return None
    from handoffd.runtime import check_dir
    from handoffd.runtime import runtime_dir as default_dir

    directory = runtime_dir or default_dir()  # the default one is created and checked
    check_dir(directory)
    keys = ensure_local_key(directory)
    log.info("no --key-file: only holders of the local key %s/local.key may connect", directory)
    return keys


@dataclass(frozen=True)
class ClientAuth:
    curve: CurveKeys | None
    local_key: str | None = None  # the local key's path when ``curve`` is the local key


def client_curve(
    address: str, *, key_file: str | None, insecure: bool = False, allow_local_users: bool = False
) -> ClientAuth:
    """The keys a client connects with; raises when it has none and was not told to go without."""
    if key_file:
        return ClientAuth(load_key_file(key_file, insecure=insecure))
    if allow_local_users or allow_local_users_env():
        return ClientAuth(None)
    host, _ = split_address(address)
    if not is_loopback(host):
        raise AuthenticationError(
            f"no key file to connect to {address}: pass --key-file (key_file=, or "
            "HANDOFFD_KEY_FILE) with the cluster's key. If that cluster runs without a key "
            f"(--insecure), {_OPT_IN} to connect without authentication"
        )
    path = local_key_path()
    try:
        from handoffd.transport.keys import load_local_key

        return ClientAuth(load_local_key(path), path)
    except FileNotFoundError:
        raise AuthenticationError(
            f"no local key at {path}: is a handoffd daemon of yours running? A keyless daemon "
            "creates it on start (`handoffd start`; a daemon of another user, or one with another "
            "HANDOFFD_RUNTIME_DIR, has its own). For a daemon started with --key-file pass "
            f"--key-file; for one started with --allow-local-users {_OPT_IN}"
        ) from None

"""Key files without sockets: the cluster key file (round trip, mode, malformed and mismatched
files), the local key of the runtime dir (refused when others can touch it), and a keyless client
refusing a non-loopback address before it opens any connection."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from handoffd.runtime import RuntimeDirError
from handoffd.transport.keys import (
    KeyFileError,
    ensure_local_key,
    generate_key_file,
    load_key_file,
    load_local_key,
)

NOBODY = 65534  # another local user: nobody


def test_key_file_round_trip_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "cluster.key"
    keys = generate_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key_file(path) == keys
    assert "secret" not in repr(keys).replace("secret=<hidden>", "")
    with pytest.raises(KeyFileError, match="already exists"):
        generate_key_file(path)
    assert generate_key_file(path, force=True) != keys


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("garbage\n", "expected 'public: ...'"),
        ("public: abc\nsecret: def\n", "40-character z85"),
        ("public: " + "0" * 40 + "\n", "no secret key"),
    ],
)
def test_malformed_key_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=match):
        load_key_file(path)


def test_mismatched_pair_and_missing_file(tmp_path: Path) -> None:
    one, two = generate_key_file(tmp_path / "1"), generate_key_file(tmp_path / "2")
    (tmp_path / "mixed").write_text(
        f"public: {one.public.decode()}\nsecret: {two.secret.decode()}\n"
    )
    with pytest.raises(KeyFileError, match="does not belong"):
        load_key_file(tmp_path / "mixed")
    with pytest.raises(KeyFileError, match="does not exist.*handoffctl keygen"):
        load_key_file(tmp_path / "missing")


def test_a_local_key_others_can_touch_is_refused(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    keys = ensure_local_key(str(runtime))
    path = runtime / "local.key"
    path.chmod(0o640)
    with pytest.raises(RuntimeDirError, match="mode 0640.*chmod 600"):
        load_local_key(str(path))
    path.unlink()
    (runtime / "elsewhere.key").write_text(path.name)
    path.symlink_to(runtime / "elsewhere.key")
    with pytest.raises(RuntimeDirError, match="symlink"):
        ensure_local_key(str(runtime))
    path.unlink()
    assert ensure_local_key(str(runtime), keys) == keys
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
        with pytest.raises(RuntimeDirError, match="owned by uid 65534"):
            load_local_key(str(path))


def test_client_without_a_key_refuses_a_non_loopback_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import handoffd.client

    def no_socket(*args: Any, **kwargs: Any) -> None:  # this test must never open a connection
        raise AssertionError(f"the client tried to connect to {args[0]}")

    monkeypatch.setattr(handoffd.client, "ControlClient", no_socket)
    monkeypatch.delenv("HANDOFFD_ALLOW_LOCAL_USERS", raising=False)
    monkeypatch.delenv("HANDOFF_KEY_FILE", raising=False)
    with pytest.raises(handoffd.AuthenticationError, match="--key-file.*--allow-local-users"):
        handoffd.connect("192.0.2.1:7788")

"""``handoffd start --die-with-parent`` (``handoffd/daemon/watchdog.py``) without processes: the
flag's syntax and its errors, what an ``fd:N`` or ``pid:N`` must be to be watched, the watch
thread's end of the launcher (one leave asked for, then a bounded exit), its close, the
launcher's pipe and its copy in a forked child, and the option kept off the environment and the
config file. Real launchers killed with their daemons: tests/daemons/test_die_with_parent.py."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any

import cli_fakes
import pytest

from handoffd.cli import daemon, daemon_run
from handoffd.daemon import watchdog
from handoffd.daemon.watchdog import LauncherPipe, ParentWatch, Target, WatchError
from handoffd.testing import wait_for

clean_env = cli_fakes.clean_env

pytestmark = pytest.mark.timeout(60)


# -- the flag's syntax -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "target"),
    [("fd:3", Target("fd", 3)), (" FD:0 ", Target("fd", 0)), ("pid:4242", Target("pid", 4242))],
)
def test_parse_accepts_fd_and_pid(text: str, target: Target) -> None:
    assert watchdog.parse(text) == target
    assert str(target) in ("fd:3", "fd:0", "pid:4242")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "give fd:N"),
        ("3", "give fd:N"),
        ("fd:", "give fd:N"),
        ("fd:x", "give fd:N"),
        ("fd:-1", "give fd:N"),
        ("fd:\u0663", "give fd:N"),  # an Arabic-Indic three: isdigit() but not a number to pass
        ("tcp:3", "give fd:N"),
        ("pid:1", "never exits"),
        ("pid:0", "never exits"),
        ("fd:99999999999", "too large"),
    ],
)
def test_parse_refuses_with_what_to_give(text: str, says: str) -> None:
    with pytest.raises(WatchError, match=says) as refused:
        watchdog.parse(text)
    assert repr(text) in str(refused.value)


# -- what fd:N must be -----------------------------------------------------------------------------


def _closed_fd() -> int:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    return r


def test_an_fd_that_is_not_open_is_refused_naming_pass_fds() -> None:
    fd = _closed_fd()
    with pytest.raises(WatchError, match=rf"no file descriptor {fd} is open.*pass_fds=\[{fd}\]"):
        watchdog.open_watch(Target("fd", fd))


def test_a_regular_file_and_a_write_end_are_refused(tmp_path: Path) -> None:
    with open(tmp_path / "f", "wb+") as f:
        with pytest.raises(WatchError, match="not a pipe or a socket"):
            watchdog.open_watch(Target("fd", f.fileno()))
    r, w = os.pipe()
    try:
        with pytest.raises(WatchError, match="write end; pass its read end"):
            watchdog.open_watch(Target("fd", w))
    finally:
        os.close(r)
        os.close(w)


def test_a_pipe_whose_launcher_is_gone_already_is_refused() -> None:
    r, w = os.pipe()
    os.close(w)
    try:
        with pytest.raises(WatchError, match="gone already"):
            watchdog.open_watch(Target("fd", r))
    finally:
        os.close(r)


def test_an_open_read_end_is_taken_off_inheritance() -> None:
    r, w = os.pipe()
    os.set_inheritable(r, True)  # as pass_fds hands it to the daemon
    try:
        watch = watchdog.open_watch(Target("fd", r))
        assert watch.fd == r and not os.get_inheritable(r) and not os.get_blocking(r)
        watch.close()  # never started: closes the descriptor
        with pytest.raises(OSError):
            os.fstat(r)
    finally:
        os.close(w)


# -- what pid:N must be ----------------------------------------------------------------------------


def _unused_pid() -> int:
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    return pid


def test_pid_checks_name_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WatchError, match="this daemon itself"):
        watchdog.open_watch(Target("pid", os.getpid()))
    pid = _unused_pid()
    with pytest.raises(WatchError, match=f"no process {pid} runs"):
        watchdog.open_watch(Target("pid", pid))
    # A process that started after this one holds a reused pid: the launcher is gone.
    real = watchdog._proc_stat
    mine = real(os.getpid())
    assert mine is not None
    later = [*mine[:19], str(int(mine[19]) + 1), *mine[20:]]
    monkeypatch.setattr(watchdog, "_proc_stat", lambda p: later if p == os.getppid() else real(p))
    with pytest.raises(WatchError, match="started after this daemon"):
        watchdog.open_watch(Target("pid", os.getppid()))


def test_the_parent_pid_is_watched_through_a_pidfd_or_polled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watch = watchdog.open_watch(Target("pid", os.getppid()))
    try:
        if hasattr(os, "pidfd_open"):
            assert watch.fd >= 0
    finally:
        watch.close()

    def no_pidfd(pid: int) -> int:
        raise OSError(errno.ENOSYS, "no pidfd_open")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd, raising=False)
    polled = watchdog.open_watch(Target("pid", os.getppid()))
    assert polled.fd == -1 and polled._pid_since is not None
    polled.close()


# -- the watch thread ------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.gone = 0
        self.exits: list[int] = []

    def on_gone(self) -> None:
        self.gone += 1

    def exit(self, code: int) -> None:
        self.exits.append(code)


def _watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "parent-watch"]


def test_the_launchers_end_asks_one_leave_then_exits_past_the_bound() -> None:
    r, w = os.pipe()
    watch = watchdog.open_watch(Target("fd", r))
    seen = Recorder()
    watch.start(seen.on_gone, 0.05, seen.exit)
    os.write(w, b"stray")  # the launcher wrote something: read and dropped, not an end
    os.close(w)
    wait_for(lambda: seen.exits, 10, what="the bounded exit")
    assert seen.gone == 1 and seen.exits == [watchdog.EXIT_OVERRUN]
    assert watch.gone.is_set()
    wait_for(lambda: not _watch_threads(), 10, what="the watch thread's end")


def test_drain_reads_stray_bytes_and_reports_the_end() -> None:
    r, w = os.pipe()
    watch = watchdog.open_watch(Target("fd", r))
    os.write(w, b"x" * 4096)
    assert watch._drain() is None
    os.close(w)
    assert watch._drain() == "its end of the pipe closed"
    watch.close()


def test_a_failing_leave_still_ends_in_the_exit() -> None:
    r, w = os.pipe()
    watch = watchdog.open_watch(Target("fd", r))
    seen = Recorder()

    def broken() -> None:
        raise RuntimeError("the loop is closed")

    watch.start(broken, 0.01, seen.exit)
    os.close(w)
    wait_for(lambda: seen.exits == [watchdog.EXIT_OVERRUN], 10, what="the exit")


def test_close_before_the_end_stops_the_thread_and_asks_nothing() -> None:
    r, w = os.pipe()
    watch = watchdog.open_watch(Target("fd", r))
    seen = Recorder()
    watch.start(seen.on_gone, 0.01, seen.exit)
    watch.close()
    assert not _watch_threads()
    os.close(w)  # after close: nobody watches any more
    assert (seen.gone, seen.exits) == (0, [])
    with pytest.raises(OSError):
        os.fstat(r)


def test_after_the_end_close_leaves_the_exit_timer_running() -> None:
    """What holds the process up after the leave (a thread the interpreter waits for) must not
    keep it alive: the exit still comes."""
    r, w = os.pipe()
    watch = watchdog.open_watch(Target("fd", r))
    seen = Recorder()
    watch.start(seen.on_gone, 0.3, seen.exit)
    os.close(w)
    wait_for(lambda: seen.gone, 10, what="the leave asked for")
    watch.close()
    wait_for(lambda: seen.exits == [watchdog.EXIT_OVERRUN], 10, what="the exit after close")


def test_a_polled_pid_is_seen_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    alive = [True]
    monkeypatch.setattr(watchdog, "POLL_S", 0.01)
    monkeypatch.setattr(watchdog, "_alive", lambda pid, since: alive[0])
    watch = ParentWatch(Target("pid", 4242), -1, 123)
    seen = Recorder()
    watch.start(seen.on_gone, 0.01, seen.exit)
    alive[0] = False
    wait_for(lambda: seen.exits, 10, what="the polled pid's end")
    assert seen.gone == 1


def test_alive_tells_a_reused_pid_from_the_launcher() -> None:
    fields = watchdog._proc_stat(os.getpid())
    assert fields is not None
    since = watchdog._start_ticks(fields)
    assert watchdog._alive(os.getpid(), since)
    assert not watchdog._alive(os.getpid(), (since or 0) + 1)
    assert not watchdog._alive(_unused_pid(), None)


# -- the launcher's pipe ---------------------------------------------------------------------------


def test_the_launcher_pipe_passes_its_read_end_and_keeps_the_write_end() -> None:
    pipe = LauncherPipe()
    try:
        assert pipe.args() == ["--die-with-parent", f"fd:{pipe.read_fd}"]
        assert pipe.pass_fds == (pipe.read_fd,)
        assert not os.get_inheritable(pipe.read_fd) and not os.get_inheritable(pipe._write_fd)
        reader = os.dup(pipe.read_fd)  # what a daemon holds
        watch = watchdog.open_watch(Target("fd", reader))
        seen = Recorder()
        watch.start(seen.on_gone, 0.01, seen.exit)
        pipe.close()
        wait_for(lambda: seen.exits, 10, what="the daemon's side seeing the launcher's end")
        assert seen.gone == 1
        with pytest.raises(ValueError, match="closed"):
            pipe.args()
    finally:
        pipe.close()


def test_a_forked_child_drops_its_copy_of_the_write_end() -> None:
    """Run in this process as ``os.register_at_fork`` runs it in a child: afterwards the child's
    copy holds no daemon up, and cannot start one that would watch it."""
    pipe = LauncherPipe()
    write_fd = pipe._write_fd
    try:
        watchdog._after_fork_in_child()
        with pytest.raises(OSError):
            os.fstat(write_fd)
        with pytest.raises(ValueError):
            pipe.args()
    finally:
        pipe.close()
    assert pipe not in watchdog._open_pipes


# -- the option ------------------------------------------------------------------------------------


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []

    def record(args: Any, *, as_json: bool = False) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(daemon_run, "start", record)
    return calls


@pytest.mark.usefixtures("clean_env")
def test_the_option_is_parsed_and_bad_values_are_usage_errors(
    started: list[Any], capsys: Any
) -> None:
    assert daemon.main(["start"]) == 0
    assert started[-1].die_with_parent is None  # without the flag nothing is watched
    assert daemon.main(["start", "--die-with-parent", "pid:77"]) == 0
    assert started[-1].die_with_parent == Target("pid", 77)
    capsys.readouterr()
    assert daemon.main(["start", "--die-with-parent", "parent"]) == 2
    err = capsys.readouterr().err
    assert "--die-with-parent" in err and "give fd:N" in err


@pytest.mark.usefixtures("clean_env")
def test_neither_a_variable_nor_the_config_file_sets_it(
    started: list[Any], clean_env: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    """A descriptor number or pid means something only to the process handed it: every process
    below would inherit a variable, and a config file serves every daemon of the user."""
    clean_env["HANDOFFD_DIE_WITH_PARENT"] = "pid:77"
    assert daemon.main(["start"]) == 0
    assert started[-1].die_with_parent is None
    config = tmp_path / "d.toml"
    config.write_text('[daemon]\ndie-with-parent = "pid:77"\n')
    capsys.readouterr()
    assert daemon.main(["start", "--config", str(config)]) == 2
    assert "only the command line sets it" in capsys.readouterr().err
    assert daemon.main(["start", "--help"]) == 0
    assert "HANDOFFD_DIE_WITH_PARENT" not in capsys.readouterr().out


def test_start_checks_the_target_before_anything_starts() -> None:
    fd = _closed_fd()
    with pytest.raises(WatchError, match=f"--die-with-parent fd:{fd}: no file descriptor"):
        daemon_run._parent_watch(f"fd:{fd}")
    with pytest.raises(WatchError, match="--die-with-parent 'x'"):
        daemon_run._parent_watch("x")
    assert daemon_run._parent_watch(None) is None

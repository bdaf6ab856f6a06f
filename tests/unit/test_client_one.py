"""``Client.execute`` of a plain one-function DAG in one go (``handoffd.client_one``): the request
is the codec's bytes, a reply is taken only when the codec reads it as that request's DONE outcome,
and every other DAG, option or reply goes the general way with the same outcome."""

from __future__ import annotations

import pickle
import random
import sys
from typing import Any

import msgpack
import pytest

import handoffd
from handoffd import client as client_module
from handoffd import client_one, errors, values
from handoffd.protocol import codec
from handoffd.protocol import messages as m

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def no_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing shipped (the fake daemon runs the payload here, with no code dir)."""
    from handoffd import packages

    monkeypatch.setattr(packages, "local_modules_package", lambda roots, cwd=False: None)
    monkeypatch.setattr(packages, "cwd_package", lambda cwd: None)


def double(x: int) -> int:
    return 2 * x


def one(**fields: Any) -> handoffd.DAG:
    return handoffd.DAG().add_function(handoffd.Function(id="one", code=double, **fields))


def outcome(request_id: int, run_id: str, **changes: Any) -> m.RunOutcome:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "run_id": run_id,
        "state": "DONE",
        "counts": {"DONE": 1},
        "placement": {"one": "d0"},
        "owner": "d0",
        "term": 1,
        "standbys": ("d1",),
        "error": None,
        "task_ids": ("one",),
        "pending": (),
        "released": True,
        "known": False,
    }
    fields.update(changes)
    return m.RunOutcome(**fields)


class Daemon:
    """A connection answering each ``SubmitAndWait`` with what ``answer`` makes of it (a list of
    replies, each a message and its frames)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.replies: list[list[Any]] = []
        self.requests: list[Any] = []
        self.disconnected = False
        self.dialed = False

    def send(self, frames: list[Any]) -> None:
        decoded = codec.decode([bytes(f) for f in frames])
        assert decoded is not None
        self.requests.append(decoded)
        if type(decoded.msg) is m.SubmitAndWait:
            for msg, extra in self.answer(decoded.msg, decoded.frames):
                self.replies.append(codec.encode(msg, sender="d0", frames=extra))

    def recv(self, timeout: float) -> list[Any] | None:
        return self.replies.pop(0) if self.replies else None

    def close(self) -> None:
        pass


def done(request: m.SubmitAndWait, frames: list[Any]) -> list[Any]:
    """Run the one task here: its payload is (code, extra_args, kwargs)."""
    fn, extra_args, kwargs = values.loads(frames[0])
    value = values.dumps(fn(*extra_args, **kwargs))
    return [(outcome(request.request_id, request.run_id), [value])]


def client_for(daemon: Daemon) -> Any:
    """A client whose first connection is ``daemon`` (another thread's: one like it)."""

    class FakeClient(client_module.Client):
        def _dial(self, address: str, timeout: float) -> Any:
            if daemon.dialed:
                return Daemon(daemon.answer)
            daemon.dialed = True
            return daemon

    client = FakeClient("127.0.0.1:1", allow_local_users=True)
    client._known.append("127.0.0.1:2")  # knows two: no ListNodes before a submission
    return client


def test_a_plain_one_function_execute_takes_the_one_go_path() -> None:
    daemon = Daemon(done)
    client = client_for(daemon)
    before = client_one.taken
    for i in range(3):
        assert client.execute(one(extra_args=[i])) == {"one": 2 * i}
    assert client_one.taken == before + 3
    request = daemon.requests[-1].msg
    assert request.tasks == (
        m.TaskMeta("one", (), {"cpu": 1.0}, "variadic", None, None, False, None, None, 0),
    )
    assert (request.max_retries, request.policy, request.outputs, request.release) == (
        3,
        "binpack",
        None,
        True,
    )


@pytest.mark.parametrize(
    "fields, options, expected",
    [
        ({"cost": {"cpu": 2}}, {}, {"one": 8}),
        ({"max_retries": 1}, {}, {"one": 8}),
        ({"timeout": 5.0}, {}, {"one": 8}),
        ({"priority": 2}, {"outputs": ["one"]}, {"one": 8}),
        ({"node": "d0"}, {}, {"one": 8}),
        ({"type": "inline"}, {}, {}),  # no results, as before
        ({}, {"working_dir": None, "py_modules": []}, {"one": 8}),
        ({}, {"priority": True}, "invalid_option"),
        ({"cost": {"cpu": -1}}, {}, "invalid_cost"),
    ],
)
def test_anything_but_a_plain_one_function_execute_goes_the_general_way(
    fields: dict[str, Any], options: dict[str, Any], expected: Any
) -> None:
    client = client_for(Daemon(done))
    before = client_one.taken
    try:
        out = client.execute(one(extra_args=[4], **fields), **options)
    except errors.ValidationError as exc:
        out = exc.kind
    assert out == expected
    assert client_one.taken == before


def test_kwargs_go_the_general_way() -> None:
    client = client_for(Daemon(done))
    before = client_one.taken
    assert client.execute(one(kwargs={"x": 3})) == {"one": 6}
    assert client_one.taken == before


def test_a_refused_option_raises_as_before_and_sends_nothing() -> None:
    daemon = Daemon(done)
    client = client_for(daemon)
    with pytest.raises(errors.ValidationError, match="policy"):
        client.execute(one(extra_args=[1]), policy="nearest")  # type: ignore[arg-type]
    with pytest.raises(errors.ValidationError, match="max_retries"):
        client.execute(one(extra_args=[1]), max_retries=-1)
    assert daemon.requests == []


def test_other_replies_are_read_the_general_way() -> None:
    """A late reply first, then RunAccepted and the outcome: the general reading skips the
    first, follows the second and takes the third."""

    def late_then_accepted(request: m.SubmitAndWait, frames: list[Any]) -> list[Any]:
        late = outcome(request.request_id - 1, "0" * 16)
        accepted = m.RunAccepted(request.request_id, request.run_id, "d0")
        return [(late, [b"x"]), (accepted, []), *done(request, frames)]

    client = client_for(Daemon(late_then_accepted))
    before = client_one.taken
    assert client.execute(one(extra_args=[5])) == {"one": 10}
    assert client_one.taken == before


def test_a_failed_run_raises_its_error_through_the_general_way() -> None:
    def failed(request: m.SubmitAndWait, frames: list[Any]) -> list[Any]:
        error = m.ErrorInfo("TaskFailed", "one", "boom", "ValueError", "", 1, {}, {}, "")
        reply = outcome(
            request.request_id, request.run_id, state="FAILED", error=error, task_ids=()
        )
        return [(reply, [])]

    client = client_for(Daemon(failed))
    with pytest.raises(errors.TaskFailed, match="boom"):
        client.execute(one(extra_args=[1]))


def test_no_answer_is_a_connection_error_naming_the_daemon(monkeypatch: Any) -> None:
    monkeypatch.setattr(client_module, "_SUBMIT_TIMEOUT", 0.0)
    monkeypatch.setattr(handoffd.client_moves, "MOVE_WITHIN", 0.0)
    client = client_for(Daemon(lambda request, frames: []))
    client.timeout = 0.01
    with pytest.raises(errors.ConnectionError, match="no handoffd node took run"):
        client.execute(one(extra_args=[1]))


def test_the_request_is_the_codecs_bytes() -> None:
    rng = random.Random(13)
    for _ in range(300):
        sender = f"client-{rng.randrange(1 << 40):x}"
        shas = tuple(f"{rng.randrange(1 << 64):064x}" for _ in range(rng.randrange(3)))
        key = (
            sender,
            rng.choice(["one", "f", "x" * 200, "é"]),
            rng.choice(["variadic", "as_list"]),
            rng.choice([0, 1, -5, 1 << 40]),
            rng.choice([0, 3, 1000]),
            rng.choice(["binpack", "spread", "first_fit"]),
            rng.choice([0.0, 2.0, 0.5]),
            rng.choice([1, 64 << 20]),
            shas,
        )
        prefix, suffix = client_one._template(key)
        request_id = rng.choice([1, 127, 128, 65_536, 1 << 40])
        run_id = f"{rng.randrange(1 << 64):016x}"
        body = b"".join((prefix, client_one._packb((request_id, run_id))[1:], suffix))
        _, fid, inclusion, priority, max_retries, policy, poll, max_bytes, shas = key
        row = (fid, (), {"cpu": 1.0}, inclusion, None, None, False, None, None, priority)
        request = m.SubmitAndWait(
            request_id,
            run_id,
            codec.Rows([row]),
            max_retries,
            policy,
            None,
            poll,
            max_bytes,
            True,
            shas,
        )
        assert body == codec.encode(request, sender=sender)[0]


GARBAGE = [0, 1, -1, True, False, 1.0, "", "DONE", "one", b"one", None, (), ("one",), (1,), {}]
GARBAGE += [{"a": 1}, {1: 1}, {"a": "b"}, {"a": 1.0}, ("d1", 2), 1 << 63]


def test_a_reply_is_taken_only_when_the_codec_reads_it_as_this_requests_done_outcome() -> None:
    """Each field of a DONE outcome (and of its envelope) replaced by garbage: the one-go path
    takes the reply exactly when the codec decodes it to a DONE RunOutcome of this request
    carrying the one value, released."""
    rng = random.Random(7)
    request_id, run_id = 41, "0123456789abcdef"
    good = codec.encode(outcome(request_id, run_id), sender="d0", frames=[b"v"])
    assert client_one._done(good, request_id, run_id, "one") == b"v"
    fields = list(msgpack.unpackb(good[0], use_list=False))
    seen = {True: 0, False: 0}
    for _ in range(3000):
        changed = list(fields)
        for _ in range(rng.choice([1, 1, 2])):
            changed[rng.randrange(len(changed))] = rng.choice(GARBAGE)
        if rng.random() < 0.05:
            changed.append(rng.choice(GARBAGE))  # a newer sender's trailing field
        frames = [msgpack.packb(changed), b"v"]
        decoded = codec.decode(frames)
        msg = None if decoded is None else decoded.msg
        expected = (
            type(msg) is m.RunOutcome
            and msg.request_id == request_id
            and msg.run_id == run_id
            and msg.state == "DONE"
            and msg.error is None
            and msg.task_ids == ("one",)
            and msg.pending == ()
            and msg.released is True
            and msg.block_sizes == b""  # (a block outcome is not one named value: protocol 7)
            and len(changed) == len(fields)
        )
        taken = client_one._done(frames, request_id, run_id, "one") is not None
        assert taken == expected, changed
        seen[taken] += 1
    assert seen[True] > 20 and seen[False] > 1000
    assert client_one._done([good[0]], request_id, run_id, "one") is None  # no value frame
    assert client_one._done([*good, b"w"], request_id, run_id, "one") is None
    assert client_one._done([b"\xc1", b"v"], request_id, run_id, "one") is None


def test_threads_sharing_a_client_each_get_their_own_results() -> None:
    import threading

    client = client_for(Daemon(done))
    errors_seen: list[BaseException] = []

    def work(base: int) -> None:
        try:
            for i in range(base, base + 50):
                assert client.execute(one(extra_args=[i])) == {"one": 2 * i}
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors_seen.append(exc)

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors_seen == []


def test_the_code_package_goes_once_and_again_when_the_daemon_lacks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from handoffd import packages

    package = packages.Package("ab" * 32, b"a zip", "test")
    monkeypatch.setattr(packages, "local_modules_package", lambda roots, cwd=False: package)
    monkeypatch.setattr(packages, "cwd_package", lambda cwd: package)
    sent: list[tuple[tuple[str, ...], int]] = []  # (the shas listed, frames after the body)

    def answer(request: m.SubmitAndWait, frames: list[Any]) -> list[Any]:
        sent.append((request.packages, len(frames)))
        if len(sent) == 2:  # this daemon lost it: it says so, the client sends it again
            lacks = m.ErrorInfo("ValidationError", None, "no", "", "", 0, {}, {}, "missing_package")
            return [(m.RunRejected(request.request_id, request.run_id, lacks), [])]
        return [(outcome(request.request_id, request.run_id), [values.dumps(7)])]

    client = client_for(Daemon(answer))
    for _ in range(3):
        assert client.execute(one(extra_args=[1])) == {"one": 7}
    assert sent == [(("ab" * 32,), 2), (("ab" * 32,), 1), (("ab" * 32,), 2), (("ab" * 32,), 1)]


def test_an_outcome_like_the_last_but_its_ids_is_taken_from_its_bytes() -> None:
    """After one outcome read whole, the next with the same bytes but for its request and run
    ids is taken without unpacking (its shape); a change anywhere else is read whole again."""
    client_one._shapes.clear()
    first = codec.encode(outcome(1, "a" * 16), sender="d0", frames=[b"v1"])
    assert client_one._done(first, 1, "a" * 16, "one") == b"v1"
    assert "one" in client_one._shapes
    unpacked: list[Any] = []
    real_unpackb = client_one._unpackb

    def counting_unpackb(data: Any, **kwargs: Any) -> Any:
        unpacked.append(1)
        return real_unpackb(data, **kwargs)

    client_one._unpackb = counting_unpackb  # type: ignore[assignment]
    try:
        second = codec.encode(outcome(70_000, "b" * 16), sender="d0", frames=[b"v2"])
        assert client_one._done(second, 70_000, "b" * 16, "one") == b"v2"
        assert unpacked == []
        assert client_one._done(second, 70_001, "b" * 16, "one") is None  # not our request
        assert client_one._done(second, 70_000, "c" * 16, "one") is None  # nor our run
        unpaid = codec.encode(outcome(3, "d" * 16, released=False), sender="d0", frames=[b"v"])
        assert client_one._done(unpaid, 3, "d" * 16, "one") is None
        moved = codec.encode(outcome(4, "e" * 16, owner="d1"), sender="d1", frames=[b"v4"])
        assert client_one._done(moved, 4, "e" * 16, "one") == b"v4"  # read whole: new shape
        assert len(unpacked) == 4
    finally:
        client_one._unpackb = real_unpackb  # type: ignore[assignment]


def test_a_function_pickled_by_reference_reuses_its_bytes_while_cloudpickle_would_agree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``_code`` returns ``values.dumps_code``'s bytes: the last ones while the function is its
    module's under the same name, pickled anew once anything that decides it changed."""
    import types

    import cloudpickle

    module = types.ModuleType("w3c_by_reference")
    exec("def f(x):\n    return x + 1\n", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    fn = module.f
    pickled: list[Any] = []
    real_dumps_code = values.dumps_code

    def counting_dumps_code(obj: Any, shas: tuple[str, ...] = ()) -> bytes:
        pickled.append(obj)
        return real_dumps_code(obj, shas)

    monkeypatch.setattr(values, "dumps_code", counting_dumps_code)
    by_reference = client_one._code(fn, ())
    assert by_reference == real_dumps_code(fn) and b"w3c_by_reference" in by_reference
    assert client_one._code(fn, ()) is by_reference and len(pickled) == 1
    packaged = client_one._code(fn, ("ab" * 32,))  # other packages: other bytes
    assert packaged == real_dumps_code(fn, ("ab" * 32,)) and len(pickled) == 2
    client_one._code(fn, ())

    def fresh() -> bytes:
        out = client_one._code(fn, ())
        assert out == real_dumps_code(fn)
        return out

    # Its module renamed: cloudpickle asks whether that name is registered by value.
    module.__name__ = "w3c_renamed"
    assert fresh() == by_reference and len(pickled) == 4
    module.__name__ = "w3c_by_reference"
    # Registered to be pickled by value: by value now.
    cloudpickle.register_pickle_by_value(module)
    try:
        assert pickle.loads(fresh())(1) == 2 and len(pickled) == 5
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    assert fresh() == by_reference
    # Its module's name for it now names another function: by value.
    module.f = lambda x: x
    assert fresh() != by_reference
    module.f = fn
    assert fresh() == by_reference
    # Another module under that name in sys.modules: by value.
    other = types.ModuleType("w3c_by_reference")
    monkeypatch.setitem(sys.modules, module.__name__, other)
    assert fresh() != by_reference
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert fresh() == by_reference
    # Its qualified name changed: pickled again under the new one (not found there: by value).
    fn.__qualname__ = "g"
    assert fresh() != by_reference


def test_a_function_pickled_by_value_reuses_its_bytes_while_its_quick_proof_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``_code`` keeps the code cache's quick proof of its last function pickled by value and
    checks it itself: the same bytes while it holds (``values.dumps_code`` not called), what
    ``values.dumps_code`` gives once anything the pickle is made of changed."""
    import types

    import cloudpickle

    module = types.ModuleType("w3c_by_value")
    exec("K = 1\ndef f(x, y=1):\n    return x + K + y\n", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    cloudpickle.register_pickle_by_value(module)
    fn = module.f
    calls: list[Any] = []
    real_dumps_code = values.dumps_code

    def counting_dumps_code(obj: Any, shas: tuple[str, ...] = ()) -> bytes:
        calls.append(obj)
        return real_dumps_code(obj, shas)

    def fresh(shas: tuple[str, ...] = ()) -> bytes:
        out = client_one._code(fn, shas)
        assert out == real_dumps_code(fn, shas)
        return out

    monkeypatch.setattr(values, "dumps_code", counting_dumps_code)
    try:
        first = fresh()
        fresh()  # the code cache's proof is kept from this call on
        kept = len(calls)
        assert fresh() is first and fresh() is first and len(calls) == kept
        shas = ("cd" * 32,)
        packaged = fresh(shas)
        assert packaged != first and len(calls) == kept + 1
        assert fresh(shas) is packaged  # (values keeps the packaged bytes too)
        changes = [
            lambda: module.__dict__.__setitem__("K", 2),  # a global it names
            lambda: setattr(fn, "__defaults__", (5,)),
            lambda: setattr(fn, "__code__", (lambda x, y=1: x - K - y).__code__),  # noqa: F821
            lambda: cloudpickle.unregister_pickle_by_value(module),  # by reference now
        ]
        seen = {first, packaged}
        for change in changes:
            before = fresh()
            change()
            after = fresh()
            assert after != before and after not in seen
            seen.add(after)
            assert pickle.loads(after) is not None
    finally:
        if "w3c_by_value" in cloudpickle.cloudpickle._PICKLE_BY_VALUE_MODULES:
            cloudpickle.unregister_pickle_by_value(module)


def test_run_ids_are_64_random_bits_and_a_forked_child_draws_its_own() -> None:
    """Run ids come from a generator seeded by os.urandom (no system call per run); a forked
    child seeds it again, so parent and child never draw the same ids."""
    import os

    daemon = Daemon(done)
    client = client_for(daemon)
    for i in range(20):
        assert client.execute(one(extra_args=[i])) == {"one": 2 * i}
    ids = [r.msg.run_id for r in daemon.requests if type(r.msg) is m.SubmitAndWait]
    assert len(ids) == 20 and len(set(ids)) == 20
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next draw, to the parent
        try:
            os.write(write, b"%016x" % client_one._bits(64))
        finally:
            os._exit(0)
    os.close(write)
    try:
        child = os.read(read, 16).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert len(child) == 16 and child != f"{client_one._bits(64):016x}"


def test_get_reads_the_last_results_of_a_dag_until_the_dag_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``client.get(ref)`` answers from the DAG's last execute (nothing sent), executing the
    same DAG again replaces them, and dropping the DAG drops its entry (a weak reference whose
    callback pops it) without an error from the callback."""
    import gc

    from handoffd.decorator import Ref

    raised: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", raised.append)
    daemon = Daemon(done)
    client = client_for(daemon)
    dag = one(extra_args=[4])
    other = one(extra_args=[5])
    assert client.execute(dag) == {"one": 8}
    assert client.execute(other) == {"one": 10}
    dag.functions["one"].extra_args = [6]
    assert client.execute(dag) == {"one": 12}  # again: its entry's value replaced
    sent = len(daemon.requests)
    assert client.get(Ref("one", dag)) == 12 and client.get(Ref("one", other)) == 10
    assert len(daemon.requests) == sent  # answered from the last results
    assert len(client._ran) == 2
    del dag
    gc.collect()
    assert len(client._ran) == 1
    del other
    gc.collect()
    assert len(client._ran) == 0 and raised == []

"""``Client.execute`` of a plain one-function DAG in one go (issue 13, W3).

A one-task ``execute`` runs one process at a time (client, owner, worker, client), so every
microsecond of the client's Python is latency. The general path validates the DAG, builds rows,
encodes them through the checked codec, makes a ``Run``, decodes the reply into a ``RunOutcome``
and a ``RunStatus`` and collects the results through the ``Run``: ~280 Python calls, each slow
after the ~0.7 ms the client sleeps (cold caches). This path does only what such a DAG needs:

- **Which DAGs.** One function that sets nothing but its id, code, literal ``extra_args``,
  ``priority`` and ``argument_inclusion`` (the test ``DAG._validated_order`` uses to skip
  ``_check_function``; such a DAG passes every rule of ``validation.check_submission``), run
  options that pass those rules too, no ``outputs``/``working_dir``/``py_modules``. Anything
  else (and any doubt) is the general path, which also raises every error.
- **The request in one go.** The code packages are built and the payload pickled exactly as
  ``DAG.wire_tasks`` does (``packages.local_modules_package``, ``values.dumps_code`` with its
  proof that a reused pickle is current, ``values.dumps_call``). The ``SubmitAndWait`` body is
  the codec's own bytes: per DAG shape and options its packed envelope and fields (built once
  through the checked codec) around the request id and run id, the only fields that change.
- **The reply without machinery.** A reply that is exactly what the codec would decode as this
  request's DONE ``RunOutcome`` carrying the one value, released, is read straight from its
  unpacked fields (every field checked as the codec's schema checks it) and the value unpickled.
  Anything else (RUNNING, an error, a rejection, a late reply, another version's message) goes
  to the general path's reading of replies (``Client._submitted``) with that reply first, and
  ``execute`` finishes as for any run.

Failover and the Ctrl-C note are the general path's (``client_moves.submit_anywhere``); each
thread uses its own connection, as every request does (``client_threads``).
"""

from __future__ import annotations

import os
import random
import sys
import time
import types
import weakref
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import msgpack
from cloudpickle import cloudpickle as _cp

from handoffd import client_moves, client_upload, code_cache, errors, packages, upload, values
from handoffd.client_run import Run
from handoffd.dag import DAG, plain
from handoffd.protocol import codec, schema
from handoffd.protocol import messages as m
from handoffd.validation import POLICIES

if TYPE_CHECKING:
    from handoffd.client import Client
    from handoffd.dag import Function

taken = 0  # executes answered here (tests prove this path is used)
_SUBMIT: int = m.SubmitAndWait.TYPE  # type: ignore[attr-defined]
_OUTCOME: int = m.RunOutcome.TYPE  # type: ignore[attr-defined]
_OFFSET = schema.MESSAGE_OFFSET
_OUTCOME_LEN = _OFFSET + len(m.RunOutcome.__dataclass_fields__)  # type: ignore[attr-defined]
_BLOCK_FIELDS = 2  # RunOutcome's since protocol 7 (block_sizes, block_ids)
_LIMIT = 64  # request templates kept (a client with changing options drops them all)
# (sender, id, argument_inclusion, priority, max_retries, policy, wait, max_bytes, packages)
# -> (the packed head up to the request id, the packed fields after the run id)
_templates: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
# function id -> the last DONE outcome read whole: its bytes before and after the request and
# run ids (``_done``)
_shapes: dict[str, tuple[bytes, bytes]] = {}
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack  # (msgpack.packb: a Packer a call)
_unpackb = msgpack.unpackb
_OUTCOME_HEADER = msgpack.Packer().pack_array_header(_OUTCOME_LEN)
# Run ids from a private generator seeded by os.urandom, not a getrandom system call per call
# (os.urandom(8) is one, with the GIL released and taken again); a forked child seeds its own
# again, or it would draw its parent's ids.
_run_ids = random.Random()
_bits = _run_ids.getrandbits
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_run_ids.seed)


def plain_function(dag: Any) -> Function | None:
    """The DAG's one function when it is a plain one (see the module's note), else None."""
    if type(dag) is not DAG or len(dag._functions) != 1:
        return None
    for key, fn in dag._functions.items():
        if fn.id == key and plain(fn) and not fn.args:
            return fn
    return None


def execute(
    client: Client,
    dag: Any,
    max_retries: Any,
    timeout: Any,
    policy: Any,
    priority: Any,
    settings: tuple[float, int, float],
) -> dict[str, Any] | Run | None:
    """``dag``'s results, or the ``Run`` for ``execute`` to finish as any run (the reply was not
    this path's), or None: not a plain one-function execute (nothing was sent).
    ``settings``: the client's (poll, execute's max result bytes, submit timeout)."""
    fn = plain_function(dag)
    if (
        fn is None
        or type(priority) is not int
        or type(max_retries) is not int
        or max_retries < 0
        or policy not in POLICIES
    ):
        return None
    poll_max, max_bytes, submit_timeout = settings
    if timeout is None:
        poll = poll_max
    elif type(timeout) is float or type(timeout) is int:
        poll = max(0.0, min(poll_max, timeout))
    else:
        return None
    fid = fn.id
    source = dag._source_dir
    if source:  # handoffctl submit's dag.py directory
        local = packages.local_modules_package([os.getcwd(), source], cwd=True)
    else:
        local = packages.cwd_package(os.getcwd())
    shas = () if local is None else (local.sha,)
    try:
        code = _code(fn.code, shas)
        payload = values.dumps_call(code, fn.extra_args, {})  # (a list: plain_function)
    except Exception:
        return None  # the general path says what cannot be shipped
    key = (
        client._name,
        fid,
        fn.argument_inclusion,
        fn.priority + priority,
        max_retries,
        policy,
        poll,
        max_bytes,
        shas,
    )
    template = _templates.get(key)
    if template is None:
        template = _template(key)
    if len(client._known) < 2:
        client._learn_alone()
    run_id = _bits(64).to_bytes(8, "big").hex()  # 64 random bits in hex, as the general path's
    # max(client.timeout, submit_timeout), without max()'s argument parsing
    limit = client.timeout
    wait_for = poll + (submit_timeout if submit_timeout > limit else limit)
    # [the run, once a reply was not this path's: followed as any] (_general). The exchange's
    # state is passed as arguments, not closed over: a closure's cells cost more each call
    box: list[Run | None] = [None]
    call = (client, dag, fid, run_id, timeout, wait_for, template, payload, local, shas, box)
    out = client_moves.submit_anywhere(client, run_id, partial(_exchange, call))
    if isinstance(out, m.RunMoved):  # a retry found the run already taken: follow it
        client._learn(out.owner_address)
        owned = _general(call)
        owned.owner = out.owner
        return owned
    return out


# (client, dag, function id, run id, timeout, seconds a reply is waited for, the request's
# template, the payload, the code package or None, its shas, [the run or None]) of one execute
_Call = tuple[
    Any, Any, str, str, Any, float, tuple[bytes, bytes], bytes, Any, tuple[str, ...], list[Any]
]


def _general(call: _Call) -> Run:
    """The run as the general path follows it, made once (kept in the call's box)."""
    client, dag, fid, run_id, timeout = call[:5]
    box = call[10]
    run: Run | None = box[0]
    if run is None:
        run = box[0] = Run(client, run_id, "", [fid], None)
        run._hook_consumers = dict(dag.hook_consumers)
        run._deadline = None if timeout is None else time.monotonic() + timeout
    return run


def _exchange(call: _Call) -> dict[str, Any] | Run:
    """One submission of the call to the client's current daemon, the package sent again if
    the owner lacked it."""
    out = _attempt(call, False)
    if type(out) is dict or not out._missing_package:  # type: ignore[union-attr]
        return out
    return _attempt(call, True)  # the owner lacked our package: send it again


def _attempt(call: _Call, resend: bool) -> dict[str, Any] | Run:
    global taken
    client, _, fid, run_id, _, wait_for, template, payload, local, shas, box = call
    request_id = next(client._ids)
    prefix, suffix = template
    # msgpack is concatenative: the pair's items, without its array header, are the two
    # fields as the codec packs them
    ids = _packb((request_id, run_id))[1:]
    body = b"".join((prefix, ids, suffix))
    frames = [body, payload]
    # this thread's connection and address (client_threads), read without the properties
    # over them; no connection yet (a new thread, a failover that reached nobody): made below
    threads = client._threads
    mine = threads._local
    address = getattr(mine, "address", threads.home)
    if local is not None:  # the zip, unless the daemon is known to hold it (package_frames)
        if resend or (address, local.sha) not in client._stored:
            frames.append(local.data)
    stats = codec.stats
    stats.encoded += 1
    stats.encoded_by_type[_SUBMIT] += 1
    if len(frames) == 2 and len(body) <= upload.BODY_PAST and len(payload) <= upload.FRAME_PAST:
        # whole, as client_upload.send sends a small message
        conn = getattr(mine, "conn", None) or client._connection()
        conn.send(frames)
    else:
        client_upload.send(client, frames)
        conn = client._connection()
    limit = time.monotonic() + wait_for
    reply = conn.recv(wait_for)
    if reply is None:  # as the general path: an accepted run is followed, else no answer
        run = box[0]
        if run is not None and run.owner:
            return run  # type: ignore[no-any-return]
        raise errors.ConnectionError(client._silence(wait_for))
    value = _done(reply, request_id, run_id, fid, ids)
    if value is None:
        owned = _general(call)
        owned._missing_package = False
        return client._submitted(owned, request_id, shas, resend, limit, reply)  # type: ignore[no-any-return]
    stats.decoded += 1
    stats.decoded_by_type[_OUTCOME] += 1
    threads.answered(time.monotonic())
    if shas:
        client._stored.add((address, shas[0]))
    taken += 1
    return {fid: values.loads(value)}


# (function, its __module__, __qualname__, its module, the module's __name__, the modules
# registered to be pickled by value, package shas, the code's bytes) of the last function
# pickled by reference (``_code``)
_last_code: tuple[Any, str, str, Any, str, frozenset[str], tuple[str, ...], bytes] | None = None


def _code(fn: Any, shas: tuple[str, ...]) -> bytes:
    """``values.dumps_code(fn, shas)``. A function pickled by reference pickles to its module's
    and qualified name only, so while those are the same objects, its module the same module
    (same ``__name__``) holding it under that name, and the same modules are registered to be
    pickled by value (what cloudpickle asks to decide it is pickled by reference), its bytes are
    the last ones: the code cache's reading of it would be the same (its three objects) and
    return them, through ~10 Python calls more. A function pickled by value: while the code
    cache's quick proof of its last bytes holds (``code_cache.still``), those bytes, the proof
    checked here rather than through ``values.dumps_code`` and the code cache's look-up."""
    global _last_code, _last_other, _last_value
    value = _last_value
    if value is not None and value[0] is fn and value[2] == shas and code_cache.still(fn, value[1]):
        return value[3]  # pickled by value, its quick proof holds (code_cache)
    last = _last_code
    if last is not None and last[0] is fn:
        held: Any = last[3]
        if (
            last[6] == shas
            and fn.__module__ is last[1]
            and fn.__qualname__ is last[2]
            and held.__name__ is last[4]
            and held.__dict__.get(last[2]) is fn
            and sys.modules.get(last[1]) is held
            and _cp._PICKLE_BY_VALUE_MODULES == last[5]
        ):
            return last[7]
    if _last_other() is fn:  # not one of those last time: not asked again per call
        code = values.dumps_code(fn, shas)
        # pickled by value: the code cache's quick proof of these bytes, if it keeps one, is
        # checked here next time (not through values.dumps_code and the code cache's look-up)
        proof = values.code_proof(fn, shas, code)
        if proof is not None:
            _last_value = (fn, proof, shas, code)
        return code
    registered = frozenset(_cp._PICKLE_BY_VALUE_MODULES)
    code = values.dumps_code(fn, shas)
    _last_other = _nothing
    if type(fn) is types.FunctionType:
        module_name, qualname = fn.__module__, fn.__qualname__
        module = sys.modules.get(module_name) if type(module_name) is str else None
        name = getattr(module, "__name__", None)
        if (
            module is not None
            and type(name) is str
            and type(qualname) is str
            and "." not in qualname
            and not qualname.startswith("__")  # never a module type's own attribute
            and module_name != "__main__"
            and getattr(module, "__dict__", {}).get(qualname) is fn
            and _cp._PICKLE_BY_VALUE_MODULES == registered  # (as when it was pickled)
            and _cp._should_pickle_by_reference(fn)
        ):
            _last_code = (fn, module_name, qualname, module, name, registered, shas, code)
            return code
        _last_other = weakref.ref(fn)
    return code


def _nothing() -> None:
    return None


# (function, its code cache quick proof, package shas, the code's bytes) of the last function
# pickled by value whose proof the code cache kept (``_code``)
_last_value: tuple[Any, Any, tuple[str, ...], bytes] | None = None


# the last function found not pickled by reference (a weak reference; ``_nothing``: none)
_last_other: Callable[[], Any] = _nothing


def _template(key: tuple[Any, ...]) -> tuple[bytes, bytes]:
    """The request's bytes around its request id and run id, through the checked codec."""
    sender, fid, inclusion, priority, max_retries, policy, poll, max_bytes, shas = key
    row = (fid, (), {"cpu": 1.0}, inclusion, None, None, False, None, None, priority)
    request = m.SubmitAndWait(
        0, "", codec.Rows([row]), max_retries, policy, None, poll, max_bytes, True, shas
    )
    body = bytes(codec.default_codec.encode(request, sender=sender)[0])
    codec.stats.encoded -= 1  # a template, not a message sent
    codec.stats.encoded_by_type[_SUBMIT] -= 1
    # [envelope..., 0, "", fields...]: cut out the two packed placeholders (0 and "" are one
    # byte each in msgpack)
    lo, hi = codec.default_codec.versions
    head = msgpack.Packer(use_bin_type=True).pack_array_header(_OFFSET + 10)
    prefix = head + b"".join(_packb(v) for v in (lo, hi, _SUBMIT, sender, 0, 0, 0))
    start = len(prefix)
    if body[:start] != prefix or body[start : start + 2] != b"\x00\xa0":
        raise AssertionError("SubmitAndWait does not pack as expected")  # a codec change
    template = (prefix, body[start + 2 :])
    if len(_templates) >= _LIMIT:
        _templates.clear()
    _templates[key] = template
    return template


def _done(
    reply: list[Any], request_id: int, run_id: str, fid: str, ids: bytes | None = None
) -> Any:
    """The value frame of ``reply`` when it is exactly what ``codec.decode`` reads as the DONE
    ``RunOutcome`` of ``request_id`` carrying ``fid``'s value in full, released; else None.
    ``ids``: the two ids as the request packed them, if the caller has them."""
    if len(reply) != 2:
        return None
    head, value = reply
    limits = codec.default_codec.limits
    if len(head) > limits.max_body_bytes or len(value) > limits.max_frame_bytes:
        return None
    if ids is None:  # the two fields as packed, without the pair's header
        ids = _packb((request_id, run_id))[1:]
    shape = _shapes.get(fid)
    if shape is not None and head == b"".join((shape[0], ids, shape[1])):
        # The bytes of an outcome read below with only its ids changed (to ours): the same values
        return value
    try:
        v = _unpackb(head, use_list=False)
    except Exception:
        return None
    # (an outcome of a daemon of 6 has no block fields; a block outcome is not one value's)
    if type(v) is not tuple or len(v) != _OUTCOME_LEN and len(v) != _OUTCOME_LEN - _BLOCK_FIELDS:
        return None
    (lo, hi, type_id, sender, incarnation, term, seq, rid, rrun, state, counts, placement) = v[:12]
    (owner, run_term, standbys, error, task_ids, pending, released, known) = v[12:20]
    if v[20:] and (type(v[20]) is not bytes or v[20] or type(v[21]) is not int):
        return None
    lo_ours, hi_ours = codec.default_codec.versions
    if not (
        type(type_id) is int
        and type_id == _OUTCOME
        and type(lo) is int
        and type(hi) is int
        and lo <= hi
        and lo <= hi_ours
        and hi >= lo_ours
        and type(sender) is str
        and type(incarnation) is int
        and type(term) is int
        and type(seq) is int
        and type(rid) is int
        and rid == request_id
        and rrun == run_id
        and state == "DONE"
        and type(counts) is dict
        and type(placement) is dict
        and type(owner) is str
        and type(run_term) is int
        and type(standbys) is tuple
        and error is None
        and task_ids == (fid,)
        and pending == ()
        and released is True
        and type(known) is bool
    ):
        return None
    for name, count in counts.items():
        if type(name) is not str or type(count) is not int:
            return None
    for name, node in placement.items():
        if type(name) is not str or type(node) is not str:
            return None
    for node in standbys:
        if type(node) is not str:
            return None
    # Remember its bytes around the ids when they are where they would be packed (msgpack packs
    # each value one way: the owner's next outcome differs only there, unless its state changed)
    prefix = _OUTCOME_HEADER + b"".join(_packb(field) for field in v[:_OFFSET])
    if head[: len(prefix)] == prefix and head[len(prefix) : len(prefix) + len(ids)] == ids:
        if len(_shapes) >= _LIMIT:
            _shapes.clear()
        _shapes[fid] = (prefix, bytes(head[len(prefix) + len(ids) :]))
    return value

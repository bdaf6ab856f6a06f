"""The pipeline's pure state machines, the client's ledger (state.py) and a replica's relay
(relay.py), driven together over a simulated network: items pass replica to replica (the client
sends only the inputs and gets only the last stage's outputs), joins by correlation id, outputs in
push order, ItemFailed, micro-batches, and replay after a replica is lost with exactly one output
per item."""

from __future__ import annotations

from handoffd.stream.relay import Forward, RelayState, ToClient
from handoffd.stream.state import (
    ROUTE_BLOCK,
    ForgetItems,
    ItemFailed,
    PipelineState,
    Route,
    SendItems,
    SendRoutes,
    Stage,
    StopReplica,
    consumers_of,
)


class SimNet:
    """A client and replicas wired by in-order queues; ``deliver`` runs until quiet."""

    def __init__(self, inputs, stages, code, parallelism=None, dead_after=5.0):
        self.stages = stages
        consumers_of(inputs, stages)
        self.code = code
        self.client = PipelineState(inputs, stages, dead_after=dead_after)
        self.relays: dict[bytes, RelayState] = {}
        self.routes: dict[bytes, Route] = {}
        self.dead: set[bytes] = set()
        self.client_got = 0  # item values the client received
        self.client_sent = 0
        self.ran: dict[str, list[int]] = {}  # stage -> cids run, in order
        self.stopped: list[bytes] = []
        for stage in stages:
            for index in range((parallelism or {}).get(stage.id, 1)):
                self.join(stage, index, f"{stage.id}#{index}".encode())

    def join(self, stage: Stage, index: int, identity: bytes, now=0.0):
        relay = RelayState(stage.id, stage.args, stage.consumers, stage.batch_size,
                           stage.batch_timeout)  # fmt: skip
        self.relays[identity] = relay
        route = Route(stage.id, index, f"tcp://{identity.decode()}", identity, "n")
        self.routes[identity] = route
        self.client.joined(identity, route, now)

    def kill(self, identity: bytes):
        self.dead.add(identity)

    def heartbeats(self, now):
        for identity, route in self.routes.items():
            if identity not in self.dead:
                self.client.heard(route.stage, route.replica, now)

    def deliver(self, now=0.0, rounds=100):
        for _ in range(rounds):
            busy = False
            for send in self.client.take():
                busy = True
                if isinstance(send, SendRoutes):
                    for identity in send.identities:
                        if identity not in self.dead:
                            self.relays[identity].routes(send.epoch, send.replay_epoch,
                                                         send.routes, now)  # fmt: skip
                elif isinstance(send, SendItems):
                    self.client_sent += len(send.cids)
                    if send.identity not in self.dead:
                        self.relays[send.identity].items(send.epoch, send.source, send.cids,
                                                         send.values, now)  # fmt: skip
                elif isinstance(send, StopReplica):
                    self.stopped.append(send.identity)
                elif isinstance(send, ForgetItems):
                    for identity in send.identities:
                        if identity not in self.dead:
                            self.relays[identity].forget(send.cids)
            for identity, relay in list(self.relays.items()):
                if identity in self.dead:
                    continue
                while (work := relay.ready(now)) is not None:
                    busy = True
                    self.ran.setdefault(relay.stage, []).extend(work.cids)
                    outputs, failures = [], {}
                    for cid, arg in zip(work.cids, work.args, strict=True):
                        try:
                            args = arg if len(relay.args) > 1 else (arg,)
                            outputs.append(self.code[relay.stage](*args))
                        except Exception as exc:
                            outputs.append(None)
                            failures[cid] = (type(exc).__name__, str(exc), "")
                    relay.ran(work, 0.001)
                    for out in relay.outputs(work, outputs, failures):
                        if isinstance(out, ToClient):
                            self.client_got += len(out.cids)
                            self.client.done(relay.stage, out.sink, out.cids, out.outputs,
                                             out.failures)  # fmt: skip
                        else:
                            assert isinstance(out, Forward)
                            target = out.to.public_key  # the identity, in this simulation
                            if target not in self.dead:
                                self.relays[target].items(out.epoch, relay.stage, out.cids,
                                                          out.values, now)  # fmt: skip
            if not busy:
                return
        raise AssertionError("the simulated pipeline did not settle")

    def results(self):
        out = self.client.outputs
        return [out[i] for i in sorted(out)]


def chain3(**kwargs):
    stages = [Stage("a", ("src",)), Stage("b", ("a",)), Stage("c", ("b",))]
    code = {"a": lambda x: x + 1, "b": lambda x: x * 10, "c": lambda x: x - 1}
    return SimNet(["src"], stages, code, **kwargs)


def test_items_pass_replica_to_replica_and_only_the_ends_touch_the_client():
    net = chain3(parallelism={"b": 3})
    for i in range(1000):
        net.client.push({"src": i})
    net.deliver()
    assert net.results() == [(i + 1) * 10 - 1 for i in range(1000)]
    assert net.client_sent == 1000 and net.client_got == 1000  # not 3000 each way
    assert sorted(net.ran["b"]) == list(range(1000))
    # b's three replicas share the items in blocks of ROUTE_BLOCK
    per_replica = {i: 0 for i in range(3)}
    for identity, relay in net.relays.items():
        if relay.stage == "b":
            per_replica[net.routes[identity].replica] = 1
    assert sum(per_replica.values()) == 3


def test_join_of_several_inputs_meets_in_one_replica_and_fan_out_reaches_each_consumer():
    stages = [Stage("sum", ("x", "y")), Stage("neg", ("x",)), Stage("both", ("sum", "neg"))]
    code = {"sum": lambda x, y: x + y, "neg": lambda x: -x, "both": lambda s, n: s + n}
    net = SimNet(["x", "y"], stages, code, parallelism={"sum": 2, "both": 3})
    for i in range(500):
        net.client.push({"x": i, "y": 100 * i})
    net.deliver()
    assert net.results() == [100 * i for i in range(500)]
    assert not any(r.joins for r in net.relays.values())  # every join completed


def test_a_failing_item_gets_item_failed_and_goes_no_further():
    net = chain3()
    net.code["b"] = lambda x: 1 // (x - 14)  # item 13 (a gives 14) divides by zero
    for i in range(40):
        net.client.push({"src": i})
    net.deliver()
    out = net.results()
    failed = out[13]
    assert isinstance(failed, ItemFailed) and failed.correlation_id == 13
    assert failed.error.function_id == "b" and "ZeroDivisionError" in str(failed.error)
    assert 13 not in net.ran["c"] and len(out) == 40


def test_micro_batches_wait_for_size_or_timeout():
    stages = [Stage("a", ("src",), batch_size=8, batch_timeout=0.05)]
    net = SimNet(["src"], stages, {"a": lambda x: x})
    relay = net.relays[b"a#0"]
    for i in range(20):
        net.client.push({"src": i})
    net.deliver(now=0.0)
    assert net.ran["a"] == list(range(16))  # two full batches; 4 wait
    assert relay.wait(0.01) == 0.05 - 0.01 or abs(relay.wait(0.01) - 0.04) < 1e-9
    net.deliver(now=0.06)
    assert net.results() == list(range(20))


def test_a_lost_replica_is_dropped_its_items_replayed_once_each():
    net = chain3(parallelism={"b": 2}, dead_after=2.0)
    for i in range(600):
        net.client.push({"src": i})
    # b#1 dies before anything was delivered: its share of the items is lost on the way
    net.kill(b"b#1")
    net.deliver(now=0.0)
    done_before = net.client.finished
    assert 0 < done_before < 600  # b#0's blocks came out, b#1's did not
    net.heartbeats(3.0)
    net.client.tick(3.0)  # b#1 silent for longer than dead_after
    net.deliver(now=3.0)
    assert net.client.replayed == 600 - done_before
    assert net.results() == [(i + 1) * 10 - 1 for i in range(600)]  # exactly one each
    assert b"b#1" in net.stopped


def test_a_replacement_replica_joins_and_old_copies_are_ignored():
    net = chain3(parallelism={"b": 2})
    for i in range(300):
        net.client.push({"src": i})
    net.kill(b"b#1")
    net.deliver()
    lost = 300 - net.client.finished
    assert lost > 0
    # a new attempt of b#1 joins (the owner re-placed it): the old one is told to stop
    net.join(net.stages[1], 1, b"b#1-new")
    net.deliver()
    assert b"b#1" in net.stopped and net.client.replayed == lost
    assert net.results() == [(i + 1) * 10 - 1 for i in range(300)]


def test_items_of_a_newer_epoch_wait_for_its_table_and_older_ones_are_dropped():
    relay = RelayState("b", ("a",), ["c"], per_item=1e-6)
    c0 = Route("c", 0, "tcp://c0", b"c0", "n")
    relay.routes(1, 0, (c0,), 0.0)
    relay.items(2, "a", [0, 1], ["x", "y"], 0.0)  # from a peer that has table 2 already
    assert relay.ready(0.0) is None and relay.held
    relay.routes(2, 2, (c0,), 0.0)  # the table arrives (a replay epoch)
    work = relay.ready(0.0)
    assert work is not None and work.cids == [0, 1]
    relay.items(1, "a", [5], ["old"], 0.0)  # replayed by the client: dropped
    assert relay.ready(0.0) is None
    (fwd,) = relay.outputs(work, ["X", "Y"], {})
    assert isinstance(fwd, Forward) and fwd.to == c0 and fwd.cids == [0, 1]
    relay.routes(3, 3, (c0,), 0.0)  # another replay while work of epoch 2 ran: dropped
    assert relay.outputs(work, ["X", "Y"], {}) == []


def test_the_client_holds_items_while_a_first_stage_has_no_replica():
    net = chain3(dead_after=1.0)
    net.kill(b"a#0")
    net.heartbeats(2.0)
    net.client.tick(2.0)
    for i in range(10):
        net.client.push({"src": i})
    net.deliver(now=2.0)
    assert net.client_sent == 0 and net.client.stage_replicas("a") == 0
    net.join(net.stages[0], 0, b"a#0-new", now=2.0)
    net.deliver(now=2.0)
    assert net.results() == [(i + 1) * 10 - 1 for i in range(10)]


def test_route_blocks_keep_consecutive_items_together():
    net = chain3(parallelism={"a": 2})
    for i in range(4 * ROUTE_BLOCK):
        net.client.push({"src": i})
    sends = [s for s in net.client.take() if isinstance(s, SendItems)]
    assert {tuple(s.cids[:1]) for s in sends} == {(0,), (ROUTE_BLOCK,)}
    assert all(len(s.cids) == 2 * ROUTE_BLOCK for s in sends)


def test_a_failed_branch_makes_the_join_forget_the_other_branch():
    stages = [Stage("sum", ("x", "y")), Stage("neg", ("x",)), Stage("both", ("sum", "neg"))]
    code = {"sum": lambda x, y: x + y, "neg": lambda x: 1 // (x - 4), "both": lambda s, n: s + n}
    net = SimNet(["x", "y"], stages, code, parallelism={"both": 2})
    for i in range(10):
        net.client.push({"x": i, "y": 100 * i})
    net.deliver()
    out = net.results()
    assert isinstance(out[4], ItemFailed) and out[4].error.function_id == "neg"
    assert not any(r.joins for r in net.relays.values())  # sum's value for item 4 was dropped

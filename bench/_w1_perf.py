"""``bench/w1_contention.py``'s ``--perf`` part: ``perf record`` of sched_switch/sched_wakeup on the
daemons' threads, and its ``perf script`` read as the owner loop's time off its CPU by cause (asleep
in epoll or a futex: the GIL; runnable after a wake-up or preempted; by whom; by 10 ms bins).
Split out of w1_contention.py (the module-size rule); ``tests/unit/test_w1_contention.py`` reads
``loop_times`` through w1_contention, which imports it from here."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import defaultdict
from typing import Any

# -- perf: the loop thread's time off its CPU, by cause ---------------------------------------


def perf_start(tids: list[int], out: str) -> subprocess.Popen[bytes] | None:
    perf = shutil.which("perf")
    if perf is None:
        print("perf not found: --perf skipped", flush=True)
        return None
    switch = " || ".join(f"prev_pid == {t} || next_pid == {t}" for t in tids)
    wake = " || ".join(f"pid == {t}" for t in tids)
    cmd = [perf, "record", "-q", "-a", "-k", "mono", "-o", out]
    cmd += ["-e", "sched:sched_switch/call-graph=fp/", "--filter", switch]
    cmd += ["-e", "sched:sched_wakeup/call-graph=no/", "--filter", wake]
    cmd += ["-e", "sched:sched_wakeup_new/call-graph=no/", "--filter", wake]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # (attached)
    if proc.poll() is not None:
        print(f"perf record failed: {proc.stderr.read().decode()[:300]}", flush=True)  # type: ignore[union-attr]
        return None
    return proc


_HEAD = re.compile(
    r"^(?P<comm>.*?)\s+(?P<tid>-?\d+)\s+(?P<t>\d+\.\d+):\s+sched:(?P<event>\w+):\s(?P<trace>.*)$"
)


def _kv(text: str) -> dict[str, str]:
    out = {}
    for part in text.split():
        key, eq, value = part.partition("=")
        if eq:
            out[key] = value
    return out


def sleep_kind(stack: list[str]) -> str:
    for sym in stack:
        if "futex" in sym:
            return "futex"
        if "ep_poll" in sym or "epoll" in sym or "do_select" in sym or "do_sys_poll" in sym:
            return "select"
    return "other sleep"


BINS, BIN_S = 16, 0.01  # the rounds' first and last 160 ms, by 10 ms
SUBKEYS = ("n ", "@", "first ", "last ", "+", "-")  # (perf_read's keys besides the totals)


def perf_read(
    data: str,
    loop: int,
    windows: list[tuple[float, float]],
    parts: dict[int, str],
    also: tuple[int, ...] = (),
) -> list[dict[str, Any]]:
    """Per window: the loop thread's ms off its CPU by cause, and who woke or preempted it
    (``parts``: the benchmark's threads by id, named by part; any other thread by its name);
    for the threads ``also`` (recorded too), their time on a CPU, as "<part> on a CPU"."""
    perf = shutil.which("perf") or "perf"
    text = subprocess.run(
        [perf, "script", "-i", data, "-F", "comm,tid,time,event,trace,ip,sym"],
        capture_output=True,
        text=True,
    ).stdout
    return loop_times(text, loop, windows, parts, also)


def loop_times(
    text: str,
    loop: int,
    windows: list[tuple[float, float]],
    parts: dict[int, str],
    also: tuple[int, ...] = (),
) -> list[dict[str, Any]]:
    """``perf_read`` of ``perf script``'s output ``text``."""
    events: list[tuple[float, str, str, str, list[str]]] = []  # (t, event, comm, trace, stack)
    for line in text.splitlines():
        match = _HEAD.match(line)
        if match is None:  # a stack line of the event before (kernel first), or noise
            if events and line.startswith(("\t", " " * 8)) and line.split():
                events[-1][4].append(line.split()[-1])
            continue
        tid = int(match["tid"]) if match["tid"].isdigit() else -1
        comm = parts.get(tid, match["comm"].strip())
        events.append((float(match["t"]), match["event"], comm, match["trace"], []))
    events.sort(key=lambda e: e[0])
    rounds: list[dict[str, Any]] = [defaultdict(float) for _ in windows]

    def add(start: float, end: float, key: str) -> None:
        for i, (a, b) in enumerate(windows):
            overlap = min(end, b) - max(start, a)
            if overlap > 0:
                rounds[i][key] += overlap * 1000.0
                tenth = (b - a) / 10.0  # (and by tenth of the round: when in the round)
                for d in range(10):
                    lo, hi = a + d * tenth, a + (d + 1) * tenth
                    part = min(end, hi) - max(start, lo)
                    if part > 0:
                        rounds[i][f"@{d} {key.split(' (')[0]}"] += part * 1000.0
                for d in range(BINS):  # (and by 10 ms from the start, and from the end)
                    for edge, name in ((a + d * BIN_S, f"+{d}"), (b - (d + 1) * BIN_S, f"-{d}")):
                        part = min(end, edge + BIN_S) - max(start, edge, a)
                        if part > 0:
                            rounds[i][f"{name} {key.split(' (')[0]}"] += part * 1000.0

    off_since: float | None = None  # the loop left its CPU then
    kind = ""  # why: "futex", "select", "other sleep", "preempted"
    woken_at: float | None = None
    on_since: float | None = None  # the loop got its CPU then
    others_on: dict[str, float] = {}  # an ``also`` thread (by id) got its CPU then
    watched = {str(tid): parts.get(tid, str(tid)) for tid in also}
    for t, event, comm, trace, stack in events:
        kv = _kv(trace)
        if event == "sched_switch" and watched:
            out, into = kv.get("prev_pid", ""), kv.get("next_pid", "")
            if out in watched and out in others_on:
                add(others_on.pop(out), t, f"{watched[out]} on a CPU")
            if into in watched:
                others_on[into] = t
        if event == "sched_switch":
            if kv.get("prev_pid") == str(loop):
                if on_since is not None:
                    add(on_since, t, "on its CPU")
                off_since, woken_at, on_since = t, None, None
                if kv.get("prev_state", "").startswith("R"):
                    kind = "preempted"
                    woken_at = t
                    nxt = kv.get("next_pid", "")
                    who = (
                        parts.get(int(nxt), "(outside) " + kv.get("next_comm", "?"))
                        if nxt.isdigit()
                        else "?"
                    )
                    for i, (a, b) in enumerate(windows):
                        if a <= t < b:
                            rounds[i][f"n preempted by {who}"] += 1
                else:
                    kind = sleep_kind(stack)
            elif kv.get("next_pid") == str(loop) and off_since is None:
                on_since = t  # (the first switch-in seen)
            elif kv.get("next_pid") == str(loop) and off_since is not None:
                on_since = t
                ready = woken_at if woken_at is not None else t
                if kind == "preempted":
                    add(off_since, t, "runnable, waiting (preempted)")
                else:
                    add(off_since, ready, f"asleep: {kind}")
                    add(ready, t, "runnable, waiting (after a wake-up)")
                off_since = None
        elif event.startswith("sched_wakeup") and kv.get("pid") == str(loop):
            if off_since is not None and kind != "preempted" and woken_at is None:
                woken_at = t
                for i, (a, b) in enumerate(windows):
                    if a <= t < b:
                        rounds[i][f"n {kind}: woken by {comm}"] += 1
                        first, last = f"first {comm}", f"last {comm}"
                        if first not in rounds[i]:  # (ms after the round's start / before its end)
                            rounds[i][first] = (t - a) * 1000.0
                        rounds[i][last] = (b - t) * 1000.0
    return [dict(r) for r in rounds]

"""The dashboard's task-output document (``observability.cluster.output_document``): what the run
page gets from ``/api/runs/RUN/output``, bounded in size whatever the owner kept."""

from __future__ import annotations

from typing import Any

from handoffd.observability.cluster import OUTPUT_CHARS, ClusterFetcher, output_document
from handoffd.protocol.messages_code import GetTaskOutput, OutputEntry, TaskOutputReply


def _reply(*texts: str, next_seq: int | None = None) -> TaskOutputReply:
    entries = tuple(OutputEntry(i, "t", i + 1, f"n{i}", text) for i, text in enumerate(texts))
    return TaskOutputReply(7, "r1", entries, len(texts) if next_seq is None else next_seq, "DONE")


def test_entries_keep_attempt_node_and_text() -> None:
    doc = output_document(_reply("hello\n", "<script>x</script>\n"), "t")
    assert doc["run_id"] == "r1" and doc["task"] == "t" and doc["state"] == "DONE"
    assert [(e["attempt"], e["node"], e["text"]) for e in doc["entries"]] == [
        (1, "n0", "hello\n"),
        (2, "n1", "<script>x</script>\n"),  # as printed: the page shows it as text
    ]
    assert doc["next"] == 2 and doc["more"] is False
    assert output_document(_reply(), "")["task"] is None


def test_entries_past_the_bound_are_left_for_the_next_request() -> None:
    half = "x" * (OUTPUT_CHARS // 2 + 1)
    doc = output_document(_reply(half, half, "tail"), "t")
    assert len(doc["entries"]) == 1
    assert doc["more"] is True and doc["next"] == 1  # the page asks again from entry 1


def test_one_entry_over_the_bound_keeps_its_newest_characters() -> None:
    text = "a" * 10 + "b" * OUTPUT_CHARS
    doc = output_document(_reply(text), "t")
    (entry,) = doc["entries"]
    assert entry["text"].endswith("b" * OUTPUT_CHARS) and "a" not in entry["text"].split("\n", 1)[1]
    assert entry["text"].startswith("[10 characters cut")
    assert len(entry["text"]) < OUTPUT_CHARS + 100 and doc["more"] is False


class _CountingFetcher(ClusterFetcher):
    """The fetcher's cache in front of an owner that answers from a list (no sockets)."""

    def __init__(self) -> None:
        super().__init__("tcp://127.0.0.1:1", None)
        self.asked: list[GetTaskOutput] = []
        self.texts: list[str] = []

    def _to_owner(self, run_id: str, make: Any) -> Any:
        msg = make(1)
        self.asked.append(msg)
        if run_id != "r1":
            return None
        return _reply(*self.texts)


def test_answers_are_reused_until_the_asker_saw_the_task_move() -> None:
    f = _CountingFetcher()
    assert f.output("r1", "t", 0, "RUNNING|1|")["entries"] == []
    f.texts.append("done now\n")  # the attempt ended: its output reached the owner
    assert f.output("r1", "t", 0, "RUNNING|1|")["entries"] == []  # reused within RUN_TTL
    assert len(f.asked) == 1
    # A page that saw the task move asks with what it saw: the owner is asked again.
    doc = f.output("r1", "t", 0, "DONE|1|12.5")
    assert [e["text"] for e in doc["entries"]] == ["done now\n"] and len(f.asked) == 2
    msg = f.asked[-1]
    assert (msg.run_id, msg.task_id, msg.since, msg.wait) == ("r1", "t", 0, 0.0)
    assert f.output("nope", "t") is None

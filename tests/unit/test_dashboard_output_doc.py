"""The dashboard's task-output document (``observability.cluster.output_document``): what the run
page gets from ``/api/runs/RUN/output``, bounded in size whatever the owner kept."""

from __future__ import annotations

from handoffd.observability.cluster import OUTPUT_CHARS, output_document
from handoffd.protocol.messages_code import OutputEntry, TaskOutputReply


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

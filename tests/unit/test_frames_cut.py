"""A whole upload's frames cut out of its bytes (``protocol.frames_cut``, ``upload.views``): the
same frames whichever build, small ones as bytes of their own, big ones as views of the upload's
bytes (never copied), and its sizes' sum with the verdicts ``upload.check`` gave with ``min`` and
``sum``."""

from __future__ import annotations

import random
from array import array
from typing import Any

import pytest
from pure_build import check_builds, pure

from handoffd import upload
from handoffd.protocol import frames_cut

PURE = pure(frames_cut, "frames_cut_pure")
BUILDS = {"imported": frames_cut, "pure": PURE}


def test_the_builds_are_the_compiled_one_and_the_py() -> None:
    check_builds(frames_cut, PURE)


def _upload(rng: random.Random) -> tuple[Any, int, array[int]]:
    sizes = array("q", [rng.choice([0, 1, 17, 4095, 4096, 4097, 70_000]) for _ in range(40)])
    at = rng.randrange(0, 30)
    data = rng.randbytes(at + sum(sizes) + rng.randrange(0, 3))
    kind = rng.choice(["bytes", "bytearray", "view", "readonly"])
    holder: Any = {
        "bytes": data,
        "bytearray": bytearray(data),
        "view": memoryview(bytearray(data)),
        "readonly": memoryview(data).toreadonly(),
    }[kind]
    return holder, at, sizes


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("seed", range(12))
def test_frames_are_the_uploads_bytes_small_ones_copied_big_ones_views(
    build: str, seed: int
) -> None:
    rng = random.Random(seed)
    data, at, sizes = _upload(rng)
    frames = BUILDS[build].cut(data, at, sizes)
    flat = bytes(data)
    start = at
    assert len(frames) == len(sizes)
    for frame, size in zip(frames, sizes, strict=True):
        assert bytes(frame) == flat[start : start + size]
        if size < frames_cut.COPY_BYTES:
            assert type(frame) is bytes
        else:  # a view of the upload's own bytes: a change there shows through
            assert type(frame) is memoryview and frame.obj is memoryview(data).obj
        start += size


@pytest.mark.parametrize("build", BUILDS)
def test_a_frame_past_the_end_is_an_index_error_in_both_builds(build: str) -> None:
    cut = BUILDS[build].cut
    for data, at, sizes in [
        (b"abc", 1, [5]),
        (b"abc", 0, [1, 1, 2]),
        (b"x" * 9000, 10, [8991]),
        (b"abc", 0, [-1]),
        (b"abc", -1, [1]),
    ]:
        with pytest.raises(IndexError):
            cut(data, at, array("q", sizes))
    assert cut(b"abc", 3, array("q", [0])) == [b""]


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("seed", range(12))
def test_total_is_the_sum_or_says_negative_or_past_an_int64(build: str, seed: int) -> None:
    rng = random.Random(seed)
    top = (1 << 63) - 1
    values = [rng.choice([0, 1, 17, 1 << 40, top, top - 5]) for _ in range(rng.randrange(0, 30))]
    if rng.random() < 0.3 and values:
        values[rng.randrange(len(values))] = rng.choice([-1, -(1 << 62)])
    got = BUILDS[build].total(array("q", values))
    if any(v < 0 for v in values):
        assert got == -1
    elif sum(values) > top:
        assert got == frames_cut.OVER
    else:
        assert got == sum(values)


@pytest.mark.parametrize("seed", range(6))
def test_upload_check_keeps_its_verdicts(seed: int) -> None:
    """``upload.check`` with the one-pass sum: a pack's frames back, a negative size refused as
    not sizes, sizes that do not add up (an overflowing pair among them) refused as such."""
    rng = random.Random(seed)
    frames = [rng.randbytes(rng.choice([0, 3, 5000])) for _ in range(rng.randrange(1, 20))]
    packed = upload.pack(frames)
    assert [bytes(f) for f in upload.unpack(packed)] == frames

    def forged(sizes: list[int], body: bytes) -> bytes:
        import msgpack

        head = msgpack.packb(sizes)
        return len(head).to_bytes(8, "big") + head + body

    with pytest.raises(ValueError, match="not a list of sizes"):
        upload.check(forged([3, -1, 2], b"abcd"))
    with pytest.raises(ValueError, match="do not add up"):
        upload.check(forged([3, 2], b"abcd"))
    with pytest.raises(ValueError, match="do not add up"):  # (wraps to 4 in 64 bits)
        upload.check(forged([(1 << 63) - 1, (1 << 63) - 1, 6], b"abcd"))


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("seed", range(8))
def test_longest_is_max_with_a_default_of_0(build: str, seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.choice([-7, 0, 1, 17, 1 << 40]) for _ in range(rng.randrange(0, 20))]
    assert BUILDS[build].longest(array("q", values)) == max(values, default=0)

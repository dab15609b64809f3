"""HistoryBuffer: bounds, eviction order, spill to disk, reopen, torn records, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diaspora.errors import ConfigError
from diaspora.streams._history import (
    Gap,
    HistoryBuffer,
    HistoryError,
    HistoryItem,
    entry_size,
)
from diaspora.testing import wait_until


def items_of(history: HistoryBuffer, subject: str, first: int = 0, last: int = 10**9) -> list[int]:
    return [x.item for x in history.range(subject, first, last) if isinstance(x, HistoryItem)]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


# -- bounds and eviction -------------------------------------------------------------------


def test_keeps_the_newest_items_within_max_items() -> None:
    with HistoryBuffer(max_items=3) as history:
        for n in range(1, 11):
            assert history.add("s", n, b"x%d" % n)
        assert items_of(history, "s") == [8, 9, 10]
        assert (history.first_item("s"), history.last_item("s")) == (8, 10)
        assert history.get("s", 7) is None
        got = history.get("s", 9)
        assert got == HistoryItem("s", 9, b"x9", {})
        assert history.stats.evicted == 7


def test_byte_bound_evicts_oldest_first_across_subjects() -> None:
    with HistoryBuffer(max_bytes=300, memory_bytes=10_000) as history:
        for n in range(1, 5):
            history.add("a", n, b"a" * 50)
            history.add("b", n, b"b" * 50)
        # 8 items of 50 bytes, bound 300: the oldest two (a1, b1) went first
        assert items_of(history, "a") == [2, 3, 4]
        assert items_of(history, "b") == [2, 3, 4]
        history.add("a", 5, b"a" * 120)  # needs 120 more bytes: a2, b2, a3 go
        assert items_of(history, "a") == [4, 5]
        assert items_of(history, "b") == [3, 4]
        assert history.stats.bytes <= 300


def test_headers_count_against_the_byte_bound() -> None:
    headers = {"Diaspora-Item": "1"}
    assert entry_size(b"12345", headers) == 5 + len("Diaspora-Item") + 1
    with HistoryBuffer(max_bytes=2 * entry_size(b"12345", headers)) as history:
        for n in range(1, 4):
            history.add("s", n, b"12345", headers)
        assert items_of(history, "s") == [2, 3]


def test_item_larger_than_the_bound_is_not_kept_and_evicts_nothing() -> None:
    with HistoryBuffer(max_bytes=100) as history:
        history.add("s", 1, b"x" * 40)
        assert not history.add("s", 2, b"x" * 101)
        history.add("s", 3, b"x" * 40)
        assert items_of(history, "s") == [1, 3]
        assert history.stats.oversize == 1


def test_re_emitted_and_older_items_are_ignored() -> None:
    with HistoryBuffer() as history:
        assert history.add("s", 5, b"five")
        assert not history.add("s", 5, b"again")
        assert not history.add("s", 3, b"older")
        assert history.add("t", 3, b"other subject")
        assert history.get("s", 5) == HistoryItem("s", 5, b"five", {})
        assert history.stats.duplicates == 2


def test_range_reports_gaps_in_order() -> None:
    with HistoryBuffer() as history:
        for n in (1, 2, 5, 6, 9):
            history.add("s", n, b"%d" % n)
        got = list(history.range("s", 0, 11))
        assert got == [
            Gap("s", 0, 0),
            HistoryItem("s", 1, b"1", {}),
            HistoryItem("s", 2, b"2", {}),
            Gap("s", 3, 4),
            HistoryItem("s", 5, b"5", {}),
            HistoryItem("s", 6, b"6", {}),
            Gap("s", 7, 8),
            HistoryItem("s", 9, b"9", {}),
            Gap("s", 10, 11),
        ]
        assert list(history.range("nothing", 1, 3)) == [Gap("nothing", 1, 3)]
        assert list(history.range("s", 3, 4)) == [Gap("s", 3, 4)]
        assert Gap("s", 3, 4).count == 2


def test_range_survives_adds_and_evictions_while_iterating() -> None:
    with HistoryBuffer(max_items=5) as history:
        for n in range(1, 6):
            history.add("s", n, b"%d" % n)
        seen: list[int | Gap] = []
        for x in history.range("s", 1, 8):
            seen.append(x.item if isinstance(x, HistoryItem) else x)
            if x == HistoryItem("s", 2, b"2", {}):
                for n in range(6, 9):  # evicts 1, 2, 3
                    history.add("s", n, b"%d" % n)
        assert seen == [1, 2, Gap("s", 3, 3), 4, 5, 6, 7, 8]


def test_invalid_bounds_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"history\.max_items: 0 must be an integer >= 1"):
        HistoryBuffer(max_items=0)
    with pytest.raises(ConfigError, match=r"history\.memory_bytes"):
        HistoryBuffer(memory_bytes=-1)
    with HistoryBuffer() as history, pytest.raises(ValueError, match="not an integer >= 0"):
        history.add("s", -1, b"")


def test_closed_buffer_refuses_use() -> None:
    history = HistoryBuffer()
    history.close()
    history.close()  # idempotent
    with pytest.raises(HistoryError, match="closed"):
        history.add("s", 1, b"")


# -- disk ------------------------------------------------------------------------------------


def test_memory_bound_spills_to_disk_and_reads_back(tmp_path: Path) -> None:
    with HistoryBuffer(tmp_path, memory_bytes=1000, max_bytes=10**6) as history:
        for n in range(1, 101):
            history.add("s", n, bytes([n]) * 100, {"n": str(n)})
        history.flush()
        history.add("s", 101, bytes([101]) * 100, {"n": "101"})  # trims RAM after the flush
        stats = history.stats
        assert stats.items == 101
        assert stats.memory_bytes <= 1000 + 2 * 102
        assert stats.disk_bytes > 100 * 100
        for n in (1, 50, 100, 101):
            assert history.get("s", n) == HistoryItem("s", n, bytes([n]) * 100, {"n": str(n)})
        assert items_of(history, "s") == list(range(1, 102))


def test_reopen_after_close_keeps_contents_and_numbering(tmp_path: Path) -> None:
    with HistoryBuffer(tmp_path, max_items=50) as history:
        for n in range(1, 81):
            history.add("a" if n % 2 else "b", n, b"p%d" % n, {"n": str(n)})
    with HistoryBuffer(tmp_path, max_items=50) as history:
        assert len(history) == 50
        assert items_of(history, "a") == list(range(31, 81, 2))
        assert items_of(history, "b") == list(range(32, 81, 2))
        assert history.get("b", 80) == HistoryItem("b", 80, b"p80", {"n": "80"})
        assert not history.add("a", 79, b"re-emitted after restart")
        assert history.add("a", 81, b"p81")
    with HistoryBuffer(tmp_path, max_items=50) as history:
        assert history.last_item("a") == 81
        assert history.first_item("a") == 33


def test_evicted_items_stay_evicted_when_reopened_with_larger_bounds(tmp_path: Path) -> None:
    with HistoryBuffer(tmp_path, max_items=10) as history:
        for n in range(1, 31):
            history.add("s", n, b"x")
    with HistoryBuffer(tmp_path, max_items=1000) as history:
        assert items_of(history, "s") == list(range(21, 31))


def test_reopen_with_smaller_bounds_keeps_the_newest(tmp_path: Path) -> None:
    with HistoryBuffer(tmp_path) as history:
        for n in range(1, 31):
            history.add("s", n, b"x" * 10)
    with HistoryBuffer(tmp_path, max_bytes=50) as history:
        assert items_of(history, "s") == [26, 27, 28, 29, 30]


def test_segments_roll_and_are_deleted_once_evicted(tmp_path: Path) -> None:
    with HistoryBuffer(tmp_path, max_items=20, segment_bytes=4096) as history:
        for n in range(1, 2001):
            history.add("s", n, b"x" * 200)
        history.flush()
        # 20 items of ~250 bytes fit in 2 segments, plus the one being written
        assert 1 <= len(segments(tmp_path)) <= 3
        assert history.stats.segments == len(segments(tmp_path))
        assert items_of(history, "s") == list(range(1981, 2001))


def test_torn_last_record_is_truncated_on_reopen(tmp_path: Path) -> None:
    with HistoryBuffer(tmp_path) as history:
        for n in range(1, 11):
            history.add("s", n, bytes([n]) * 1000, {"n": str(n)})
    [segment] = segments(tmp_path)
    size = segment.stat().st_size
    os.truncate(segment, size - 500)  # the crash cut item 10 in the middle of its payload
    with HistoryBuffer(tmp_path) as history:
        assert items_of(history, "s") == list(range(1, 10))
        assert history.get("s", 9) == HistoryItem("s", 9, bytes([9]) * 1000, {"n": "9"})
        record = (size - 1) // 10  # items 1..9; item 10's header value has one more digit
        assert history.stats.truncated_bytes == size - 500 - 9 * record
        assert history.add("s", 10, b"ten again")  # the lost item can be recorded anew
    with HistoryBuffer(tmp_path) as history:
        assert items_of(history, "s") == list(range(1, 11))
        assert history.get("s", 10) == HistoryItem("s", 10, b"ten again", {})
        assert history.stats.truncated_bytes == 0


@pytest.mark.parametrize("cut", [1, 17, 31, 36])
def test_torn_record_header_is_truncated(tmp_path: Path, cut: int) -> None:
    with HistoryBuffer(tmp_path) as history:
        for n in range(1, 4):
            history.add("s", n, b"abc")
    [segment] = segments(tmp_path)
    record = segment.stat().st_size // 3
    os.truncate(segment, 2 * record + cut)
    with HistoryBuffer(tmp_path) as history:
        assert items_of(history, "s") == [1, 2]


def test_garbage_tail_is_truncated(tmp_path: Path) -> None:
    with HistoryBuffer(tmp_path) as history:
        history.add("s", 1, b"abc")
    [segment] = segments(tmp_path)
    with segment.open("ab") as f:
        f.write(os.urandom(100))
    with HistoryBuffer(tmp_path) as history:
        assert items_of(history, "s") == [1]
        assert history.stats.truncated_bytes == 100


def test_zeroed_payload_in_the_last_segment_fails_the_crc_and_is_truncated(
    tmp_path: Path,
) -> None:
    # after a power loss a file may keep its length while its last blocks read as zeros
    with HistoryBuffer(tmp_path) as history:
        for n in range(1, 4):
            history.add("s", n, bytes([n]) * 100)
    [segment] = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    data[-100:] = bytes(100)
    segment.write_bytes(bytes(data))
    with HistoryBuffer(tmp_path) as history:
        assert items_of(history, "s") == [1, 2]
        assert history.stats.truncated_bytes == len(data) // 3


def test_corrupt_record_on_disk_is_reported_missing(tmp_path: Path) -> None:
    with HistoryBuffer(tmp_path, memory_bytes=0, segment_bytes=4096) as history:
        for n in range(1, 41):
            history.add("s", n, bytes([n]) * 500)
    first = segments(tmp_path)[0]
    data = bytearray(first.read_bytes())
    data[-10] ^= 0xFF  # a flipped bit in the last payload of a middle segment
    first.write_bytes(bytes(data))
    with HistoryBuffer(tmp_path, memory_bytes=0) as history:
        broken = history.range("s", 1, 40)
        got = [x.item if isinstance(x, HistoryItem) else x for x in broken]
        lost = next(x for x in got if isinstance(x, Gap))
        assert got == [*range(1, lost.first), lost, *range(lost.first + 1, 41)]
        assert history.get("s", lost.first) is None
        assert history.stats.corrupt == 2


def test_second_buffer_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    with HistoryBuffer(tmp_path), pytest.raises(HistoryError, match="in use by another"):
        HistoryBuffer(tmp_path)
    with HistoryBuffer(tmp_path):  # released on close
        pass


def test_unreadable_index_only_lets_evicted_items_back(tmp_path: Path) -> None:
    with HistoryBuffer(tmp_path, max_items=5) as history:
        for n in range(1, 8):
            history.add("s", n, b"x")
    (tmp_path / "index").write_bytes(b"\xc1garbage")
    with HistoryBuffer(tmp_path, max_items=5) as history:
        assert items_of(history, "s") == [3, 4, 5, 6, 7]


_CHILD = """
import sys
from diaspora.streams._history import HistoryBuffer
history = HistoryBuffer(sys.argv[1], segment_bytes=4 * 1024 * 1024, memory_bytes=1 << 20)
for n in range(1, 201):
    history.add("s", n, bytes([n % 256]) * 1000, {"n": str(n)})
history.flush()
print("flushed", flush=True)
n = 201
while True:
    history.add("s", n, bytes([n % 256]) * 300_000, {"n": str(n)})
    n += 1
"""


@pytest.mark.anyio
async def test_sigkill_keeps_every_flushed_item(tmp_path: Path) -> None:
    async with await anyio.open_process(
        [sys.executable, "-c", _CHILD, str(tmp_path)], stderr=subprocess.DEVNULL
    ) as child:
        assert child.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            line += await child.stdout.receive()
        assert line == b"flushed\n"
        await wait_until(
            lambda: sum(p.stat().st_size for p in segments(tmp_path)) > 20_000_000,
            what="the child wrote 20 MB of large items",
        )
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL
    with HistoryBuffer(tmp_path) as history:
        got = items_of(history, "s")
        assert got[:200] == list(range(1, 201))
        assert got == list(range(1, len(got) + 1))  # a prefix of what was added
        assert len(got) > 200 + 50
        for n in (1, 200, 201, got[-1]):
            size = 1000 if n <= 200 else 300_000
            assert history.get("s", n) == HistoryItem(
                "s", n, bytes([n % 256]) * size, {"n": str(n)}
            )


# -- the property: exactly the newest items within bounds, across reopens -------------------

_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.sampled_from(["a", "b.c", "d"]),
            st.integers(1, 3),  # item number step (gaps allowed)
            st.integers(0, 300),  # payload size
            st.booleans(),  # with headers
        ),
        st.just(("reopen",)),
        st.just(("flush",)),
    ),
    max_size=60,
)


def _model(
    added: list[tuple[str, int, bytes, dict[str, str]]], max_items: int, max_bytes: int
) -> list[tuple[str, int, bytes, dict[str, str]]]:
    """The newest suffix of the items that fit at all, within both bounds."""
    fitting = [x for x in added if entry_size(x[2], x[3]) <= max_bytes]
    kept: list[tuple[str, int, bytes, dict[str, str]]] = []
    total = 0
    for x in reversed(fitting):
        size = entry_size(x[2], x[3])
        if len(kept) == max_items or total + size > max_bytes:
            break
        kept.append(x)
        total += size
    return kept[::-1]


def _contents(history: HistoryBuffer) -> list[tuple[str, int, bytes, dict[str, str]]]:
    out = []
    for subject in history.subjects:
        out += [
            (x.subject, x.item, x.payload, x.headers)
            for x in history.range(subject, 0, 10**6)
            if isinstance(x, HistoryItem)
        ]
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=_ops,
    max_items=st.integers(1, 15),
    max_bytes=st.integers(1, 2000),
    memory_bytes=st.integers(0, 1000),
    on_disk=st.booleans(),
)
def test_holds_exactly_the_newest_items_within_bounds_in_order(
    ops: list[tuple[object, ...]], max_items: int, max_bytes: int, memory_bytes: int, on_disk: bool
) -> None:
    with tempfile.TemporaryDirectory() as directory:

        def open_buffer() -> HistoryBuffer:
            return HistoryBuffer(
                directory if on_disk else None,
                max_items=max_items,
                max_bytes=max_bytes,
                memory_bytes=memory_bytes,
                segment_bytes=4096,
            )

        byte_bound = max_bytes if on_disk else min(max_bytes, memory_bytes)
        history = open_buffer()
        added: list[tuple[str, int, bytes, dict[str, str]]] = []
        last: dict[str, int] = {}
        try:
            for op in ops:
                if op[0] == "add":
                    _, subject, step, size, with_headers = op
                    assert isinstance(subject, str)
                    assert isinstance(step, int)
                    assert isinstance(size, int)
                    n = last.get(subject, 0) + step
                    last[subject] = n
                    payload = bytes([n % 256]) * size
                    headers = {"Diaspora-Item": str(n)} if with_headers else {}
                    history.add(subject, n, payload, headers)
                    added.append((subject, n, payload, headers))
                elif op[0] == "flush":
                    history.flush()
                elif on_disk:
                    history.close()
                    history = open_buffer()
                expected = _model(added, max_items, byte_bound)
                assert sorted(_contents(history)) == sorted(expected)
                assert len(history) == len(expected)
                assert history.stats.bytes == sum(entry_size(x[2], x[3]) for x in expected)
                for subject in {x[0] for x in expected}:
                    numbers = [x[1] for x in expected if x[0] == subject]
                    assert history.first_item(subject) == numbers[0]
                    assert history.last_item(subject) == numbers[-1]
            history.close()
            if on_disk:
                with open_buffer() as reopened:
                    assert sorted(_contents(reopened)) == sorted(
                        _model(added, max_items, byte_bound)
                    )
        finally:
            history.close()

"""Log lines: parsing, the resume cursor, splitting long lines, and batching into addlogmsg."""

import asyncio

import pytest

from colonies_operator.colonies import errors
from colonies_operator.runtime.kube import LineSplitter
from colonies_operator.runtime.logs import Cursor, LogShipper, parse_line, since_time, timestamp_nanos


def test_a_timestamped_line_parses_to_exact_nanoseconds_and_its_text():
    assert parse_line(b"2026-11-25T08:00:01.000000123Z hello world\n") == (
        timestamp_nanos("2026-11-25T08:00:01Z") + 123, "hello world")
    assert parse_line(b"2026-11-25T08:00:01.5Z x") == (timestamp_nanos("2026-11-25T08:00:01Z") + 500_000_000, "x")
    assert parse_line(b"2026-11-25T08:00:01Z ") == (timestamp_nanos("2026-11-25T08:00:01Z"), "")


def test_a_line_without_a_timestamp_is_a_continuation():
    assert parse_line(b"just text") == (-1, "just text")


def test_bytes_that_are_not_utf8_are_replaced_not_fatal():
    stamp, text = parse_line(b"2026-11-25T08:00:01Z bad \xff\xfe byte")
    assert text == "bad \ufffd\ufffd byte"


def test_resuming_skips_exactly_what_was_shipped_even_within_one_timestamp():
    t = [timestamp_nanos("2026-11-25T08:00:01Z") + i for i in (0, 0, 0, 5)]
    cursor = Cursor()
    first = cursor.stream()
    assert [first.accept(s) for s in t[:2]] == [True, True]  # then the stream drops
    again = cursor.stream()  # reopened from the same second: everything is served again
    assert [again.accept(s) for s in t] == [False, False, True, True]
    assert (cursor.timestamp, cursor.count_at_timestamp) == (t[3], 1)


def test_since_time_floors_to_the_second_the_api_understands():
    assert since_time(timestamp_nanos("2026-11-25T08:00:01.999999999Z")) == "2026-11-25T08:00:01Z"


def test_long_lines_come_out_in_bounded_pieces_cut_on_character_boundaries():
    splitter = LineSplitter(max_line=10)
    pieces = splitter.feed("ab€€€€€cd\nshort\n".encode()) + splitter.finish()
    assert b"".join(pieces[:-1]).decode() == "ab€€€€€cd"
    assert all(len(p) <= 10 for p in pieces)
    assert all(p.decode() for p in pieces)  # every piece is valid UTF-8
    assert pieces[-1] == b"short"


def test_a_line_split_across_chunks_is_joined():
    splitter = LineSplitter(max_line=100)
    assert splitter.feed(b"hel") == []
    assert splitter.feed(b"lo\nwor") == [b"hello"]
    assert splitter.finish() == [b"wor"]


class Sink:
    def __init__(self, fail_times: int = 0, forbidden: bool = False):
        self.sent: list[str] = []
        self.fail_times = fail_times
        self.forbidden = forbidden

    async def __call__(self, text: str) -> None:
        if self.forbidden:
            raise errors.Forbidden(403, "process is not running", "addlogmsg")
        if self.fail_times:
            self.fail_times -= 1
            raise errors.ColoniesUnreachable("http://x", 1, 0.0, "down")
        self.sent.append(text)


async def test_lines_are_batched_by_size_in_order():
    sink = Sink()
    shipper = LogShipper(sink, batch_bytes=20, flush_seconds=60)
    for i in range(10):
        shipper.add(f"line {i}")
    await shipper.flush()
    assert "".join(sink.sent) == "".join(f"line {i}\n" for i in range(10))
    assert all(len(batch.encode()) <= 20 for batch in sink.sent) and len(sink.sent) > 1
    assert shipper.shipped_lines == 10


async def test_a_failed_send_keeps_the_batch_for_the_next_flush():
    sink = Sink(fail_times=1)
    shipper = LogShipper(sink)
    shipper.add("a")
    shipper.add("b")
    with pytest.raises(errors.ColoniesUnreachable):
        await shipper.flush()
    shipper.add("c")
    await shipper.flush()
    assert "".join(sink.sent) == "a\nb\nc\n"


async def test_forbidden_propagates_so_the_supervisor_can_fence():
    shipper = LogShipper(Sink(forbidden=True))
    shipper.add("a")
    with pytest.raises(errors.Forbidden):
        await shipper.flush()


async def test_the_byte_cap_ends_with_one_visible_truncation_line_and_keeps_the_tail():
    sink = Sink()
    shipper = LogShipper(sink, max_bytes=30)
    for i in range(100):
        shipper.add(f"line {i:03d}")
    await shipper.flush()
    shipped = "".join(sink.sent).splitlines()
    assert shipped[:3] == ["line 000", "line 001", "line 002"]
    assert shipped[-1].startswith("[colonies-operator: log truncated after")
    assert len(shipped) == 4
    assert list(shipper.tail)[-1] == "line 099"


async def test_the_flusher_ships_on_its_own_within_the_flush_interval():
    sink = Sink()
    shipper = LogShipper(sink, flush_seconds=0.01)
    task = asyncio.create_task(shipper.run())
    shipper.add("x")
    for _ in range(200):
        if sink.sent:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert sink.sent == ["x\n"]


def test_lines_shipped_before_a_restart_are_counted_by_the_rule_they_were_cut_by():
    from colonies_operator.runtime.logs import shipped_so_far
    shipped = ["progress 10%\rprogress 20%\n", "page\fbreak\npara\u2028graph\n", "nel\x85here\nfile\x1cgroup\n"]
    counts, size, truncated = shipped_so_far(shipped, [""])
    assert counts == {"": 5} and not truncated  # splitlines() would say 10
    assert size == len("".join(shipped).encode())


def test_whether_lines_carry_a_prefix_comes_from_the_spec_not_from_the_pods_seen_so_far():
    from dataclasses import replace

    from colonies_operator.runtime import following
    from tests.unit.test_builder import run_of
    one = run_of()
    two_nodes = replace(one, nodes=2)
    assert not following.prefixed(one) and following.all_prefixes(one) == [""]
    assert following.prefixed(two_nodes)
    assert following.all_prefixes(two_nodes) == ["[0/main] ", "[1/main] "]
    one_pod = [{"metadata": {"name": "p0", "annotations": {"batch.kubernetes.io/job-completion-index": "0"}},
                "spec": {"containers": [{"name": "main"}]}, "status": {"phase": "Running"}}]
    assert [prefix for _, _, prefix in following.containers(one_pod, following.prefixed(two_nodes))] == ["[0/main] "]


async def test_a_batch_the_server_refuses_is_sent_line_by_line_and_a_line_still_refused_becomes_a_marker():
    from colonies_operator.colonies import errors
    from colonies_operator.runtime.logs import LogShipper
    sent: list[str] = []

    async def send(text: str) -> None:
        if "bad" in text:
            raise errors.BadRequest(400, "Failed to add log", "addlogmsg")
        sent.append(text)

    shipper = LogShipper(send, batch_bytes=1 << 20)
    for line in ["one", "bad line", "nul\x00byte"]:
        shipper.add(line, "[0/main] ")
    await shipper.flush()
    assert sent == ["[0/main] one\n", "[0/main] [colonies-operator: Colonies refused this log line: Failed to add log]\n",
                    "[0/main] nul\ufffdbyte\n"]
    assert shipper.refused_lines == 1 and shipper.shipped_lines == 3


async def test_a_cancel_that_arrives_with_a_full_batch_stops_the_flusher():
    # Python 3.11's asyncio.wait_for returns normally, swallowing the cancel, when what it waits
    # for ends in the same turn: the flusher then ran on and its supervisor could never end.
    sink = Sink()
    shipper = LogShipper(sink, batch_bytes=10, flush_seconds=60)
    task = asyncio.create_task(shipper.run())
    shipper.add("a")  # queued, not full: the flusher waits for the batch to fill or the interval
    for _ in range(3):
        await asyncio.sleep(0)
    shipper.add("a full batch")  # wakes the flusher ...
    task.cancel()                # ... in the very turn it is cancelled
    for _ in range(10):
        await asyncio.sleep(0)
    assert task.cancelled()


class LongLineKube:
    """Serves one long line with no newline (the way a container's last `printf` ends), cut
    by the operator's own splitter; the first stream breaks before the line's end reaches it."""

    STAMP = b"2026-11-30T17:52:01.123456789Z "

    def __init__(self, text: bytes, max_line: int, break_after: int) -> None:
        self.text, self.max_line, self.break_after = text, max_line, break_after
        self.streams = 0

    async def pod_log(self, namespace, pod, container, *, follow, since_time=None):
        self.streams += 1
        splitter = LineSplitter(self.max_line)
        pieces = splitter.feed(self.STAMP + self.text)
        if self.streams == 1:  # the follow stream: cancelled before the stream's end flushes the tail
            for piece in pieces[:self.break_after]:
                yield piece
            raise ConnectionResetError("stream dropped")
        for piece in pieces + splitter.finish():
            yield piece


@pytest.mark.parametrize("break_after", [1, 3, 4])
async def test_a_long_line_whose_stream_broke_part_way_is_resumed_from_the_piece_after_the_last_shipped(break_after):
    from colonies_operator.runtime.logs import ship_container_log
    text = b"x" * 100 + b"y" * 7  # 4 full pieces of 32 bytes (the first holds the stamp), then 7 bytes
    kube = LongLineKube(text, max_line=32, break_after=break_after)
    sink = Sink()
    shipper = LogShipper(sink, flush_seconds=60)
    cursor = Cursor()
    with pytest.raises(ConnectionResetError):
        await ship_container_log(kube, "ns", "p", "main", cursor, shipper, follow=True)
    await ship_container_log(kube, "ns", "p", "main", cursor, shipper, follow=False)
    await shipper.flush()
    pieces = "".join(sink.sent).split("\n")[:-1]
    assert "".join(pieces) == text.decode()
    assert len(pieces) == 5  # each piece once


class Server:
    """Colonies' log of one process: `addlogmsg` stores, then the answer may be lost."""

    def __init__(self, held_before: str = "") -> None:
        self.log = held_before
        self.lose_answers = 0   # store the batch, then fail as if the answer never came
        self.drop_requests = 0  # fail after sending, before the server stored anything
        self.unreachable_on = ""  # this text fails once to connect (nothing was sent)
        self.reads = 0

    async def add(self, text: str) -> None:
        if text == self.unreachable_on:
            self.unreachable_on = ""
            raise errors.ColoniesUnreachable("http://x", 1, 0.0, "ConnectError")
        if "bad" in text:
            raise errors.BadRequest(400, "Failed to add log", "addlogmsg")
        if self.drop_requests:
            self.drop_requests -= 1
            raise errors.ColoniesUnreachable("http://x", 1, 30.0, "ReadError", maybe_delivered=True)
        self.log += text
        if self.lose_answers:
            self.lose_answers -= 1
            raise errors.ColoniesUnreachable("http://x", 1, 30.0, "ReadTimeout", maybe_delivered=True)

    async def lines_held(self) -> int:
        self.reads += 1
        return self.log.count("\n")


async def left_in_doubt(server: Server, *lines: str, stored: bool = True,
                        shipped_before: tuple[int, int] | None = None) -> LogShipper:
    """A shipper whose flush of `lines` got no answer: the server stored them and the answer
    was lost, or (not `stored`) the request never reached it. `shipped_before` is (bytes,
    lines) shipped by an operator before a restart."""
    shipper = LogShipper(server.add, lines_held=server.lines_held)
    if shipped_before:
        shipper.resume(shipped_before[0], False, lines=shipped_before[1])
    for line in lines:
        shipper.add(line)
    if stored:
        server.lose_answers = 1
    else:
        server.drop_requests = 1
    with pytest.raises(errors.ColoniesUnreachable):
        await shipper.flush()
    return shipper


async def test_a_batch_whose_answer_was_lost_after_it_was_stored_is_not_sent_again():
    """The soak stopped the operator for 30 s while an addlogmsg was in flight: on waking, its
    read timeout had passed though the server had stored the lines, and the batch went again."""
    server = Server()
    shipper = await left_in_doubt(server, "a", "b")
    shipper.add("c")
    await shipper.flush()
    assert server.log == "a\nb\nc\n" and server.reads == 1
    assert shipper.shipped_lines == 3


async def test_a_batch_that_may_not_have_arrived_is_sent_again_once_the_log_shows_it_did_not():
    server = Server()
    shipper = await left_in_doubt(server, "a", stored=False)
    await shipper.flush()
    assert server.log == "a\n" and server.reads == 1


async def test_after_a_restart_the_lines_shipped_before_count_toward_what_the_log_should_hold():
    server = Server(held_before="x\ny\n")
    shipper = await left_in_doubt(server, "a", shipped_before=(4, 2))
    await shipper.flush()
    assert server.log == "x\ny\na\n"


async def test_a_request_that_never_left_is_sent_again_without_reading_the_log_back():
    sink = Sink(fail_times=1)  # ColoniesUnreachable of a connect error: nothing was sent
    reads = []

    async def lines_held() -> int:
        reads.append(1)
        return 0

    shipper = LogShipper(sink, lines_held=lines_held)
    shipper.add("a")
    with pytest.raises(errors.ColoniesUnreachable):
        await shipper.flush()
    await shipper.flush()
    assert sink.sent == ["a\n"] and reads == []


async def test_a_batch_in_doubt_stays_in_doubt_while_the_log_cannot_be_read_back():
    server = Server()
    shipper = await left_in_doubt(server, "a")
    real_read = server.lines_held

    async def unreachable() -> int:
        raise errors.ColoniesUnreachable("http://x", 1, 0.0, "ConnectError")

    shipper._lines_held = unreachable
    with pytest.raises(errors.ColoniesUnreachable):
        await shipper.flush()
    shipper._lines_held = real_read
    await shipper.flush()
    assert server.log == "a\n"


MARKER = "[colonies-operator: Colonies refused this log line: Failed to add log]\n"


async def test_a_line_sent_alone_after_a_refusal_whose_answer_was_lost_is_not_sent_again():
    server = Server()
    shipper = LogShipper(server.add, lines_held=server.lines_held)
    for line in ["one", "bad", "two"]:
        shipper.add(line)
    server.lose_answers = 1  # the first store is "one" alone: the whole batch was refused
    with pytest.raises(errors.ColoniesUnreachable):
        await shipper.flush()
    await shipper.flush()
    assert server.log == "one\n" + MARKER + "two\n" and server.reads == 1
    assert shipper.shipped_lines == 3


async def test_lines_shipped_one_by_one_before_a_failure_count_toward_what_the_log_should_hold():
    """Had "one" and the marker not been counted as shipped, the read-back would find two lines
    where it expects the two in doubt, and "two" and "three" would never be sent."""
    server = Server()
    shipper = LogShipper(server.add, lines_held=server.lines_held)
    for line in ["one", "bad", "two"]:
        shipper.add(line)
    server.unreachable_on = "two\n"
    with pytest.raises(errors.ColoniesUnreachable):
        await shipper.flush()
    shipper.add("three")
    server.drop_requests = 1  # "two" and "three" go out, nothing is stored, no answer
    with pytest.raises(errors.ColoniesUnreachable):
        await shipper.flush()
    await shipper.flush()
    assert server.log == "one\n" + MARKER + "two\nthree\n" and server.reads == 1

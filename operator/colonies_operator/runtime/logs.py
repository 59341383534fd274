"""Pod logs → Colonies `addlogmsg`, in order, without loss or repeats.

A `Cursor` remembers the last timestamp shipped and how many lines (or pieces of a long
line) carried it, so a stream reopened with `sinceTime` (which the apiserver honours at
whole seconds) skips exactly what was already shipped. Followers push lines into one
`LogShipper` per process, which batches them by size and by time into `addlogmsg` calls,
caps the bytes per process with a visible truncation line, and keeps the last lines for
the failure message.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from colonies_operator.colonies import errors
from colonies_operator.runtime.kube import KubeApi
from colonies_operator.runtime.waits import wait_set

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024  # a longer line is cut into pieces of this size
TRUNCATION_MARK = "[colonies-operator: log truncated"
REPLACEMENT = "\ufffd"  # what a NUL byte in a log line becomes


def timestamp_nanos(stamp: str) -> int:
    """RFC 3339 with up to 9 fractional digits → Unix nanoseconds (exact, unlike float)."""
    main, _, frac = stamp.rstrip("Z").partition(".")
    if "+" in frac or "-" in frac:  # an offset other than Z: keep the seconds precision only
        frac = frac.split("+")[0].split("-")[0]
    seconds = datetime.fromisoformat(main).replace(tzinfo=timezone.utc).timestamp()
    return int(seconds) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def parse_line(raw: bytes) -> tuple[int, str]:
    """A `timestamps=true` log line → (timestamp ns, text without the newline)."""
    text = raw.decode("utf-8", errors="replace").rstrip("\n")
    stamp, sep, rest = text.partition(" ")
    try:
        return timestamp_nanos(stamp), rest if sep else ""
    except ValueError:
        return -1, text  # no timestamp: the caller treats it as a continuation


def since_time(nanos: int) -> str:
    """The `sinceTime` to resume from: the cursor's second, floored (the API's precision)."""
    return datetime.fromtimestamp(nanos // 1_000_000_000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Cursor:
    """Where a container's log was shipped up to: (last timestamp, lines seen at it; each
    piece of a long line counts as a line at its head's timestamp)."""

    timestamp: int = -1
    count_at_timestamp: int = 0
    skip: int = 0  # after adoption: lines (pieces) Colonies already holds from the stream's start

    def stream(self) -> CursorStream:
        return CursorStream(self)


class CursorStream:
    """Dedup for one opened stream: skips lines at or before the cursor, advances it."""

    def __init__(self, cursor: Cursor) -> None:
        self.cursor = cursor
        self._seen_at_cursor = 0

    def accept(self, stamp: int) -> bool:
        c = self.cursor
        if stamp < c.timestamp:
            return False
        if stamp == c.timestamp:
            self._seen_at_cursor += 1
            if self._seen_at_cursor <= c.count_at_timestamp:
                return False
            c.count_at_timestamp += 1
            return True
        c.timestamp, c.count_at_timestamp, self._seen_at_cursor = stamp, 1, 1
        return True


class LogShipper:
    """Batches one process's lines into `addlogmsg` calls; a single writer keeps them in order.

    Nothing blocks the rest of a log: a NUL byte (PostgreSQL refuses it in text) is replaced
    before sending, and a batch the server refuses for good is sent again line by line, each
    line it still refuses replaced by one marker line with the same prefix, so line counts
    (the resume point after a restart) stay exact.
    """

    def __init__(
        self, send: Callable[[str], Awaitable[None]], *, batch_bytes: int = 65536, flush_seconds: float = 1.0,
        max_bytes: int = 100 * 1024 * 1024, tail_lines: int = 20,
        on_shipped: Callable[[int, int], None] = lambda lines, size: None,
        lines_held: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        self._send = send
        self._lines_held = lines_held  # how many lines Colonies holds of this log (read back)
        self._resumed_lines = 0         # lines an earlier run shipped
        self._in_doubt = 0              # lines at the front whose send may have landed
        self._on_shipped = on_shipped
        self.batch_bytes = batch_bytes
        self.flush_seconds = flush_seconds
        self.max_bytes = max_bytes
        self.tail: deque[str] = deque(maxlen=tail_lines)
        self._pending: deque[_Line] = deque()
        self._pending_bytes = 0
        self._accepted_bytes = 0
        self.truncated = False
        self.shipped_lines = 0
        self.shipped_bytes = 0
        self.refused_lines = 0
        self.sends = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()    # a full batch is waiting
        self._queued = asyncio.Event()  # anything is waiting

    def add(self, text: str, prefix: str = "") -> None:
        """Queue one line (without its newline) for shipping."""
        text = text.replace("\x00", REPLACEMENT)
        self.tail.append(prefix + text)
        if self.truncated:
            return
        line = _Line.of(prefix, text + "\n")
        if self.max_bytes and self._accepted_bytes + line.size > self.max_bytes:
            self.truncated = True
            line = _Line.of("", f"{TRUNCATION_MARK} after {self._accepted_bytes} bytes (limit {self.max_bytes})]\n")
        self._accepted_bytes += line.size
        self._pending.append(line)
        self._pending_bytes += line.size
        self._queued.set()  # the flusher's timer starts
        if self._pending_bytes >= self.batch_bytes:
            self._wake.set()  # a full batch goes at once

    def resume(self, shipped_bytes: int, truncated: bool, lines: int = 0) -> None:
        """Continue counting toward the cap from what an earlier run shipped (`lines` of it)."""
        self._accepted_bytes = shipped_bytes
        self.truncated = truncated
        self._resumed_lines = lines

    async def flush(self) -> None:
        """Send everything queued. Forbidden propagates (the process is no longer ours);
        a transient failure keeps the lines for the next flush, so nothing is dropped."""
        async with self._lock:
            while self._pending:
                if self._in_doubt:
                    batch = self._take_exactly(self._in_doubt)
                    try:
                        landed = await self._landed(batch)
                    except errors.ColoniesError:
                        self._put_back(batch)  # still in doubt: read back again next time
                        raise
                    self._in_doubt = 0
                    if landed:
                        self._shipped(batch)
                        continue
                else:
                    batch = self._take()
                try:
                    await self._send("".join(line.text for line in batch))
                except errors.ColoniesRejected as exc:
                    if _not_ours(exc):
                        raise
                    await self._one_by_one(batch, exc)
                    continue
                except errors.ColoniesError as exc:
                    self._unsent(batch, exc, sent=len(batch))
                    raise
                self._shipped(batch)

    async def _landed(self, batch: list[_Line]) -> bool:
        """Whether a batch whose answer never came is in Colonies: `addlogmsg` is not
        idempotent, so it is read back before being sent again (a lost answer is rare: the
        server died after storing it, or the operator was stopped longer than the timeout)."""
        held = await self._lines_held()  # type: ignore[misc]
        landed = held >= self._resumed_lines + self.shipped_lines + len(batch)
        log.info("a log batch of %d lines whose answer was lost is %s", len(batch),
                 "in Colonies already" if landed else "not in Colonies: sending it again")
        return landed

    async def _one_by_one(self, batch: list[_Line], refusal: errors.ColoniesRejected) -> None:
        """The server refused `batch` for its content: send each line alone, and a marker for
        each line it refuses alone. Each line counts as shipped once sent, so a failure part
        way leaves exactly the rest queued."""
        log.warning("Colonies refused a batch of %d log lines (%s); sending them one by one", len(batch), refusal)
        for i, line in enumerate(batch):
            try:
                try:
                    await self._send(line.text)
                except errors.ColoniesRejected as exc:
                    if _not_ours(exc):
                        raise
                    self.refused_lines += 1
                    await self._send(line.prefix + f"[colonies-operator: Colonies refused this log line: {exc.message}]\n")
            except errors.ColoniesRejected as exc:
                if _not_ours(exc):
                    raise
                log.warning("Colonies refused even the marker line: %s", exc)
            except errors.ColoniesError as exc:
                self._unsent(batch[i:], exc, sent=1)
                raise
            self._shipped([line])

    def _take(self) -> list[_Line]:
        """The next batch: as many lines as fit in batch_bytes, and at least one."""
        taken = [self._pending.popleft()]
        size = taken[0].size
        while self._pending and size + self._pending[0].size <= self.batch_bytes:
            taken.append(self._pending.popleft())
            size += taken[-1].size
        self._pending_bytes -= size
        return taken

    def _take_exactly(self, count: int) -> list[_Line]:
        """The first `count` lines: the batch whose send is in doubt, whatever its size."""
        taken = [self._pending.popleft() for _ in range(min(count, len(self._pending)))]
        self._pending_bytes -= sum(line.size for line in taken)
        return taken

    def _unsent(self, lines: list[_Line], exc: errors.ColoniesError, sent: int) -> None:
        """Queue `lines` again at the front. If the request (of the first `sent` of them) went
        out and its answer was lost, those lines are in doubt until read back."""
        self._put_back(lines)
        if isinstance(exc, errors.ColoniesUnreachable) and exc.maybe_delivered and self._lines_held:
            self._in_doubt = sent

    def _put_back(self, lines: list[_Line]) -> None:
        for line in reversed(lines):
            self._pending.appendleft(line)
            self._pending_bytes += line.size

    def _shipped(self, batch: list[_Line]) -> None:
        size = sum(line.size for line in batch)
        self.sends += 1
        self.shipped_lines += len(batch)
        self.shipped_bytes += size
        self._on_shipped(len(batch), size)

    async def run(self) -> None:
        """Ship a batch when it is full or `flush_seconds` after its first line, until cancelled.

        With nothing queued it waits on an event, with no timer: thousands of quiet processes
        in flight cost no wakeups at all.
        """
        while True:
            await self._queued.wait()
            if not self._wake.is_set():
                await wait_set(self._wake, self.flush_seconds)
            self._wake.clear()
            self._queued.clear()
            try:
                await self.flush()
            except errors.ColoniesRejected:
                raise
            except errors.ColoniesError as exc:
                log.warning("shipping logs failed, will retry: %s", exc)
                if self._pending:
                    self._queued.set()  # the lines stay queued: try again a flush interval later


@dataclass(frozen=True, slots=True)
class _Line:
    prefix: str
    body: str  # the text after the prefix, with its newline
    size: int  # bytes of prefix + body

    @classmethod
    def of(cls, prefix: str, body: str) -> _Line:
        return cls(prefix, body, len(prefix.encode()) + len(body.encode()))

    @property
    def text(self) -> str:
        return self.prefix + self.body


def _not_ours(exc: errors.ColoniesRejected) -> bool:
    """403/404: the process is no longer ours (or gone); not a problem with the lines."""
    return isinstance(exc, (errors.Forbidden, errors.NotFound))


async def ship_container_log(
    kube: KubeApi, namespace: str, pod: str, container: str, cursor: Cursor, shipper: LogShipper,
    *, follow: bool, prefix: str = "",
) -> None:
    """Read one container's log from the cursor on and hand new lines to the shipper.

    With `follow`, this runs until cancelled or the stream ends; the caller stops it when
    the pod is terminal and then calls again without `follow` to drain what is left.
    """
    stream = cursor.stream()
    since = since_time(cursor.timestamp) if cursor.timestamp >= 0 else None
    head = -1  # the timestamp of the line the pieces being read belong to
    async for raw in kube.pod_log(namespace, pod, container, follow=follow, since_time=since):
        stamp, text = parse_line(raw)
        if stamp >= 0:
            head = stamp
        elif head < 0:
            continue  # a piece whose line's head this stream never served
        # Each piece of a long line counts at its line's timestamp, so a stream that broke (or
        # was cancelled) part way through a line resumes at the first piece not yet shipped.
        if not stream.accept(head):
            continue
        if cursor.skip:
            cursor.skip -= 1  # shipped before the operator restarted
            continue
        shipper.add(text, prefix)


def lines_in(messages: Iterable[str]) -> int:
    """How many lines a process's log messages hold: every line shipped ends with a newline."""
    return sum(message.count("\n") for message in messages)


def shipped_so_far(messages: list[str], prefixes: list[str]) -> tuple[dict[str, int], int, bool]:
    """What Colonies already holds of a process's log: lines per container prefix (all lines
    under "" when there is one container), total bytes, and whether it was truncated."""
    counts = dict.fromkeys(prefixes, 0)
    text = "".join(messages)
    truncated = False
    # split on "\n" only: the rule lines were cut by (a "\r" or "\u2028" is inside a line)
    for line in text.split("\n")[:-1]:
        if line.startswith(TRUNCATION_MARK):
            truncated = True
            continue
        for prefix in prefixes:
            if line.startswith(prefix):
                counts[prefix] += 1
                break
    return counts, len(text.encode()), truncated

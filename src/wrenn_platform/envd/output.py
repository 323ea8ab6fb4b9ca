"""A process's output: kept from the start in a bounded log, read by any number of cursors.

Readers hold a sequence number. The log drops its oldest chunks once it holds more than its
bound, but never chunks a live reader has not consumed yet: when a reader lags by more than the
bound, the producer is told to pause (backpressure onto the process) instead of growing memory.
"""

from __future__ import annotations

from . import aio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable
else:
    from _collections import deque  # `collections` costs start-up

STDOUT = "stdout"
STDERR = "stderr"
PTY = "pty"


class OutputLog:
    def __init__(self, bound: int, on_pressure: Callable[[bool], None]) -> None:
        self._bound = bound
        self._chunks: deque[tuple[str, bytes]] = deque()
        self._first_seq = 0  # sequence number of _chunks[0]
        self._size = 0
        self._closed = False
        self._readers: dict[int, int] = {}  # reader id -> next sequence number
        self._next_reader = 0
        self._changed = aio.Event()
        self._on_pressure = on_pressure
        self._paused = False
        self.dropped = 0

    @property
    def end_seq(self) -> int:
        return self._first_seq + len(self._chunks)

    @property
    def closed(self) -> bool:
        return self._closed

    def append(self, stream: str, data: bytes) -> None:
        self._chunks.append((stream, data))
        self._size += len(data)
        self._trim()
        self._wake()

    def close(self, keep: int | None = None) -> None:
        """No more output. `keep` lowers the bound: what a late reader may still replay."""
        self._closed = True
        if keep is not None and keep < self._bound:
            self._bound = keep
            self._trim()
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = aio.Event()

    def _trim(self) -> None:
        slowest = min(self._readers.values(), default=self.end_seq)
        while self._size > self._bound and self._chunks and self._first_seq < slowest:
            stream, data = self._chunks[0]
            excess = self._size - self._bound
            if excess < len(data):  # keep the newest part of the oldest chunk
                self._chunks[0] = (stream, data[excess:])
                self._size -= excess
                self.dropped += excess
                break
            self._chunks.popleft()
            self._size -= len(data)
            self._first_seq += 1
            self.dropped += len(data)
        paused = self._size > self._bound
        if paused != self._paused:
            self._paused = paused
            self._on_pressure(paused)

    def open_reader(self) -> int:
        reader = self._next_reader
        self._next_reader += 1
        self._readers[reader] = self._first_seq
        return reader

    def close_reader(self, reader: int) -> None:
        if self._readers.pop(reader, None) is not None:
            self._trim()

    async def read(self, reader: int, max_bytes: int = 4 * 1024 * 1024) -> list[tuple[str, bytes]] | None:
        """The chunks not yet read (waiting for some), or None once the log is closed and read."""
        while True:
            seq = max(self._readers[reader], self._first_seq)
            if seq < self.end_seq:
                out: list[tuple[str, bytes]] = []
                size = 0
                while seq < self.end_seq and size < max_bytes:
                    item = self._chunks[seq - self._first_seq]
                    out.append(item)
                    size += len(item[1])
                    seq += 1
                self._readers[reader] = seq
                self._trim()
                return out
            if self._closed:
                return None
            await self._changed.wait()

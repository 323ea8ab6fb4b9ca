"""envd's event loop: the small part of asyncio that envd uses, on epoll.

Why not asyncio: envd runs inside every capsule with whatever standard library the template's
python3 has, and its start-up is most of "create → first exec". `import asyncio` was most of that
start-up (tens of ms natively, over a second under TCG): it pulls in logging, inspect, typing,
concurrent.futures, ssl... none of which envd needs. This module gives envd's coroutines the
same surface — tasks with cancellation, futures, events, timers, fd readers/writers, signal
handlers, a thread pool, TCP stream reader/writer and a server — in one module built directly on
epoll, the signal wake-up fd, sockets and threads. envd is Linux-only, as its capsules are.

Semantics follow asyncio where envd relies on them: a cancelled task gets CancelledError at its
`await`; cancelling a task cancels the future it awaits; `wait` never cancels what it waits for;
`gather` cancels its children when it is cancelled; done-callbacks run on the next loop turn;
removing a reader cancels its already-queued callback; a stream stops reading past twice its
limit; `drain` waits while more than the high-water mark is unsent.
"""

from __future__ import annotations

import _thread
import os
import sys
from _socket import AF_INET, AF_INET6, IPPROTO_TCP, TCP_NODELAY
from _socket import socket as Socket
from heapq import heapify, heappop, heappush
from select import EPOLLIN, EPOLLOUT, epoll
from time import monotonic

# The C modules under `signal`, `collections`, `socket`, `threading` and `selectors`: the Python
# wrappers (enums, namedtuples, ...) would add a third to envd's start-up imports.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections import deque
    from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
    from typing import Any, TypeVar

    T = TypeVar("T")
else:
    import _signal as signal
    from _collections import deque

FIRST_COMPLETED = "FIRST_COMPLETED"
ALL_COMPLETED = "ALL_COMPLETED"


class CancelledError(BaseException):
    """The task was cancelled (a BaseException, as in asyncio since 3.8)."""


class IncompleteReadError(EOFError):
    def __init__(self, partial: bytes, expected: int | None) -> None:
        super().__init__(f"{len(partial)} bytes read on a total of {expected!r} expected bytes")
        self.partial = partial
        self.expected = expected


class LimitOverrunError(Exception):
    def __init__(self, message: str, consumed: int) -> None:
        super().__init__(message)
        self.consumed = consumed


class suppress:
    """`contextlib.suppress`, without importing contextlib (and collections, functools) at start."""

    def __init__(self, *exceptions: type[BaseException]) -> None:
        self._exceptions = exceptions

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, value: object, traceback: object) -> bool:
        return kind is not None and issubclass(kind, self._exceptions)


def _report(what: str) -> None:
    import traceback  # only on a bug: its imports are not worth paying at start

    sys.stderr.write(f"envd: exception in {what}\n")
    traceback.print_exc(file=sys.stderr)


class Handle:
    __slots__ = ("_args", "_callback", "cancelled")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._callback = callback
        self._args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def run(self) -> None:
        try:
            self._callback(*self._args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            _report(getattr(self._callback, "__qualname__", repr(self._callback)))


class TimerHandle(Handle):
    __slots__ = ("_loop", "when")

    def __init__(self, loop: Loop, when: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        super().__init__(callback, args)
        self._loop: Loop | None = loop  # None once out of the loop's heap
        self.when = when

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self._loop is not None:
                self._loop._timers_cancelled += 1

    def __lt__(self, other: TimerHandle) -> bool:
        return self.when < other.when


_PENDING, _DONE, _CANCELLED = 0, 1, 2


class Future:
    """A result that will be set later; `await` it from a task."""

    def __init__(self, loop: Loop | None = None) -> None:
        self._loop = loop or get_running_loop()
        self._state = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[Future], object]] = []

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def result(self) -> Any:
        if self._state == _CANCELLED:
            raise CancelledError()
        if self._state == _PENDING:
            raise RuntimeError("result is not set yet")
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self) -> BaseException | None:
        if self._state == _CANCELLED:
            raise CancelledError()
        return self._exception

    def cancel(self) -> bool:
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        self._schedule_callbacks()
        return True

    def set_result(self, result: Any) -> None:
        self._settle(result, None)

    def set_exception(self, exception: BaseException) -> None:
        self._settle(None, exception)

    def _settle(self, result: Any, exception: BaseException | None) -> None:
        if self._state != _PENDING:
            raise RuntimeError("future already done")
        self._result = result
        self._exception = exception
        self._state = _DONE
        self._schedule_callbacks()

    def add_done_callback(self, callback: Callable[[Future], object]) -> None:
        if self._state != _PENDING:
            self._loop.call_soon(callback, self)
        else:
            self._callbacks.append(callback)

    def remove_done_callback(self, callback: Callable[[Future], object]) -> None:
        self._callbacks = [c for c in self._callbacks if c != callback]

    def _schedule_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._loop.call_soon(callback, self)

    def __await__(self) -> Generator[Future, None, Any]:
        if self._state == _PENDING:
            yield self
        return self.result()

    __iter__ = __await__


class Task(Future):
    """Runs a coroutine on the loop; `cancel()` throws CancelledError into it."""

    def __init__(self, coro: Coroutine[Any, Any, Any], loop: Loop) -> None:
        super().__init__(loop)
        self._coro = coro
        self._waiting_on: Future | None = None
        self._must_cancel = False
        loop._tasks.add(self)
        loop.call_soon(self._step, None)

    def cancel(self) -> bool:
        if self._state != _PENDING:
            return False
        if self._waiting_on is not None and self._waiting_on.cancel():
            return True  # the wake-up with a cancelled future throws CancelledError in
        self._must_cancel = True
        return True

    def _step(self, exc: BaseException | None) -> None:
        if self._state != _PENDING:
            return
        if self._must_cancel:
            if not isinstance(exc, CancelledError):
                exc = CancelledError()
            self._must_cancel = False
        self._waiting_on = None
        try:
            result = self._coro.send(None) if exc is None else self._coro.throw(exc)
        except StopIteration as stop:
            self._finish()
            Future.set_result(self, stop.value)
        except CancelledError:
            self._finish()
            Future.cancel(self)
        except (SystemExit, KeyboardInterrupt) as error:
            self._finish()
            Future.set_exception(self, error)
            raise
        except BaseException as error:
            self._finish()
            Future.set_exception(self, error)
        else:
            if isinstance(result, Future):
                self._waiting_on = result
                result.add_done_callback(self._wakeup)
                if self._must_cancel and result.cancel():
                    self._must_cancel = False
            elif result is None:  # a bare `yield`: give other callbacks a turn
                self._loop.call_soon(self._step, None)
            else:
                bad = RuntimeError(f"task yielded {result!r}, not a future")
                self._loop.call_soon(self._step, bad)

    def _wakeup(self, future: Future) -> None:
        try:
            future.result()
        except BaseException as exc:
            self._step(exc)
        else:
            self._step(None)

    def _finish(self) -> None:
        self._loop._tasks.discard(self)


class ThreadPool:
    """Worker threads for blocking calls (`run_in_executor`); started as work arrives."""

    def __init__(
        self,
        max_workers: int,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        from _queue import SimpleQueue  # on first use: many capsules never need a thread

        self._jobs: SimpleQueue[tuple[Loop, Future, Callable[..., Any], tuple[Any, ...]] | None] = (
            SimpleQueue()
        )
        self._max = max_workers
        self._initializer = initializer
        self._initargs = initargs
        self._lock = _thread.allocate_lock()
        self._threads = 0
        self._idle = 0
        self._broken: BaseException | None = None

    def submit(self, loop: Loop, future: Future, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._jobs.put((loop, future, func, args))
        with self._lock:
            if self._idle > 0 or self._threads >= self._max:
                self._idle -= self._idle > 0
                return
            self._threads += 1
        _thread.start_new_thread(self._work, ())

    def _work(self) -> None:
        if self._initializer is not None and self._broken is None:
            try:
                self._initializer(*self._initargs)
            except BaseException as exc:
                self._broken = exc
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, func, args = job
            if self._broken is not None:
                error = RuntimeError(f"thread initializer failed: {self._broken!r}")
                loop.call_soon_threadsafe(_settle, future, None, error)
            else:
                try:
                    result = func(*args)
                except BaseException as exc:
                    loop.call_soon_threadsafe(_settle, future, None, exc)
                else:
                    loop.call_soon_threadsafe(_settle, future, result, None)
                del job, future, func, args
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = False) -> None:
        for _ in range(self._threads):
            self._jobs.put(None)


def _settle(future: Future, result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class Loop:
    def __init__(self) -> None:
        self._epoll = epoll()
        self._fds: dict[int, tuple[Handle | None, Handle | None]] = {}  # fd -> (reader, writer)
        self._ready: deque[Handle] = deque()
        self._timers: list[TimerHandle] = []
        self._timers_cancelled = 0  # cancelled timers still in the heap
        self._tasks: set[Task] = set()
        self._signals: dict[int, Handle] = {}
        self._executor: ThreadPool | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._watch(self._wake_r, 0, Handle(self._on_wake, ()))

    # -- callbacks and timers ---------------------------------------------------------------

    def time(self) -> float:
        return monotonic()

    def call_soon(self, callback: Callable[..., object], *args: Any) -> Handle:
        handle = Handle(callback, args)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> Handle:
        handle = Handle(callback, args)
        self._ready.append(handle)  # deque.append is atomic
        with suppress(BlockingIOError, InterruptedError):  # full: the loop is awake
            os.write(self._wake_w, b"\0")
        return handle

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        timer = TimerHandle(self, monotonic() + delay, callback, args)
        heappush(self._timers, timer)
        return timer

    def create_future(self) -> Future:
        return Future(self)

    def create_task(self, coro: Coroutine[Any, Any, T]) -> Task:
        return Task(coro, self)

    # -- file descriptors -------------------------------------------------------------------

    def _watch(self, fd: int, slot: int, handle: Handle | None) -> None:
        old = self._fds.get(fd)
        handles = list(old or (None, None))
        if handles[slot] is not None:
            handles[slot].cancel()  # type: ignore[union-attr]  # a callback already queued must not run
        handles[slot] = handle
        mask = (EPOLLIN if handles[0] else 0) | (EPOLLOUT if handles[1] else 0)
        if not mask:
            if old is not None:
                del self._fds[fd]
                with suppress(OSError):  # already closed: the kernel dropped it
                    self._epoll.unregister(fd)
            return
        self._fds[fd] = (handles[0], handles[1])
        try:
            if old is None:
                self._epoll.register(fd, mask)
            else:
                self._epoll.modify(fd, mask)
        except FileNotFoundError:  # the fd was closed while watched (the kernel forgot it): a new one
            self._epoll.register(fd, mask)
        except FileExistsError:
            self._epoll.modify(fd, mask)

    def add_reader(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        self._watch(fd, 0, Handle(callback, args))

    def remove_reader(self, fd: int) -> None:
        self._watch(fd, 0, None)

    def add_writer(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        self._watch(fd, 1, Handle(callback, args))

    def remove_writer(self, fd: int) -> None:
        self._watch(fd, 1, None)

    # -- signals ----------------------------------------------------------------------------

    def add_signal_handler(self, sig: int, callback: Callable[..., object], *args: Any) -> None:
        """`callback(*args)` runs on the loop after `sig` arrives (through the wake-up pipe)."""
        if not self._signals:
            signal.set_wakeup_fd(self._wake_w)
        self._signals[sig] = Handle(callback, args)
        signal.signal(sig, _ignore_in_python)
        signal.siginterrupt(sig, False)

    def _on_wake(self) -> None:
        while True:
            try:
                data = os.read(self._wake_r, 4096)
            except (BlockingIOError, InterruptedError):
                return
            for number in set(data):
                handle = self._signals.get(number)
                if handle is not None:
                    self._ready.append(Handle(handle._callback, handle._args))

    # -- threads ----------------------------------------------------------------------------

    def run_in_executor(self, executor: ThreadPool | None, func: Callable[..., T], *args: Any) -> Future:
        if executor is None:
            if self._executor is None:
                self._executor = ThreadPool(min(32, (os.cpu_count() or 1) + 4))
            executor = self._executor
        future = Future(self)
        executor.submit(self, future, func, args)
        return future

    # -- running ----------------------------------------------------------------------------

    def _run_once(self) -> None:
        timers = self._timers
        if self._timers_cancelled > 100 and 2 * self._timers_cancelled > len(timers):
            # Cancelled timers (e.g. each wait's 30 s keepalive) would pile up until they expire.
            for timer in timers:
                if timer.cancelled:
                    timer._loop = None
            self._timers = timers = [t for t in timers if not t.cancelled]
            heapify(timers)
            self._timers_cancelled = 0
        while timers and timers[0].cancelled:
            heappop(timers)._loop = None
            self._timers_cancelled -= 1
        if self._ready:
            timeout: float | None = 0
        elif timers:
            timeout = max(0.0, timers[0].when - monotonic())
        else:
            timeout = None
        for fd, mask in self._epoll.poll(-1 if timeout is None else timeout):
            reader, writer = self._fds.get(fd, (None, None))
            # As `selectors`: an error or hang-up wakes both sides.
            if mask & ~EPOLLOUT and reader is not None and not reader.cancelled:
                self._ready.append(reader)
            if mask & ~EPOLLIN and writer is not None and not writer.cancelled:
                self._ready.append(writer)
        now = monotonic()
        while timers and timers[0].when <= now:
            timer = heappop(timers)
            timer._loop = None
            if timer.cancelled:
                self._timers_cancelled -= 1
            else:
                self._ready.append(timer)
        for _ in range(len(self._ready)):
            handle = self._ready.popleft()
            if not handle.cancelled:
                handle.run()

    def run_until_complete(self, future: Future) -> Any:
        while not future.done():
            self._run_once()
        return future.result()

    def close(self) -> None:
        if self._signals:
            signal.set_wakeup_fd(-1)
        if self._executor is not None:
            self._executor.shutdown()
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


def _ignore_in_python(sig: int, frame: object) -> None:
    """The C-level handler already wrote the signal number to the wake-up pipe."""


_running: Loop | None = None


def get_running_loop() -> Loop:
    if _running is None or _thread.get_ident() != _loop_thread:
        raise RuntimeError("no running event loop")
    return _running


_loop_thread = 0


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion; then cancel the tasks left and let them finish."""
    global _running, _loop_thread
    loop = Loop()
    _running, _loop_thread = loop, _thread.get_ident()
    try:
        task = loop.create_task(main)
        result = loop.run_until_complete(task)
        left = list(loop._tasks)
        for other in left:
            other.cancel()
        if left:
            loop.run_until_complete(loop.create_task(gather(*left, return_exceptions=True)))
        return result
    finally:
        _running = None
        loop.close()


# -- coroutine helpers -------------------------------------------------------------------------


def ensure_future(aw: Awaitable[Any]) -> Future:
    if isinstance(aw, Future):
        return aw
    return get_running_loop().create_task(aw)  # type: ignore[arg-type]


def create_task(coro: Coroutine[Any, Any, Any]) -> Task:
    return get_running_loop().create_task(coro)


async def sleep(delay: float) -> None:
    loop = get_running_loop()
    future = Future(loop)
    timer = loop.call_later(delay, _settle, future, None, None)
    try:
        await future
    finally:
        timer.cancel()


async def wait(
    futures: Iterable[Future],
    timeout: float | None = None,  # noqa: ASYNC109  (asyncio.wait's signature)
    return_when: str = ALL_COMPLETED,
) -> tuple[set[Future], set[Future]]:
    """Wait (without cancelling them) until one or all of `futures` are done, or `timeout`."""
    futures = set(futures)
    loop = get_running_loop()
    waiter = Future(loop)
    watched = [f for f in futures if not f.done()]
    pending = len(watched)

    def on_done(_: Future) -> None:
        nonlocal pending
        pending -= 1
        if (pending <= 0 or return_when == FIRST_COMPLETED) and not waiter.done():
            waiter.set_result(None)

    if pending and not (return_when == FIRST_COMPLETED and pending < len(futures)):
        timer = loop.call_later(timeout, _settle, waiter, None, None) if timeout is not None else None
        for future in watched:
            future.add_done_callback(on_done)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            for future in watched:
                future.remove_done_callback(on_done)
    done = {f for f in futures if f.done()}
    return done, futures - done


async def gather(*aws: Awaitable[Any], return_exceptions: bool = False) -> list[Any]:
    futures = [ensure_future(aw) for aw in aws]
    try:
        await wait(futures)
    except CancelledError:
        for future in futures:
            future.cancel()
        raise
    results: list[Any] = []
    for future in futures:
        if future.cancelled():
            error: BaseException | None = CancelledError()
        else:
            error = future.exception()
        if error is not None and not return_exceptions:
            raise error
        results.append(error if error is not None else future.result())
    return results


class Event:
    def __init__(self) -> None:
        self._value = False
        self._waiters: list[Future] = []

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if self._value:
            return
        self._value = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter = Future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


# -- TCP streams ---------------------------------------------------------------------------------


class StreamReader:
    """Bytes received on a connection, read eagerly up to twice `limit`."""

    def __init__(self, conn: Connection, limit: int) -> None:
        self._conn = conn
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: Future | None = None

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, data: bytes) -> None:
        self._buffer += data
        self._wake()
        if len(self._buffer) > 2 * self._limit:
            self._conn.pause_reading()

    def _feed_eof(self, error: BaseException | None = None) -> None:
        self._eof = True
        self._error = self._error or error
        self._wake()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._conn.resume_reading()
        self._waiter = Future(self._conn.loop)
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _take(self, n: int) -> bytes:
        if n >= len(self._buffer):
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            with memoryview(self._buffer) as view:
                data = bytes(view[:n])  # one copy (a slice of the bytearray would be a second)
            del self._buffer[:n]
        if len(self._buffer) <= self._limit:
            self._conn.resume_reading()
        return data

    async def read(self, n: int = -1) -> bytes:
        if n == 0:
            return b""
        if n < 0:
            while not self._eof:
                await self._wait()
            return self._take(len(self._buffer))
        if not self._buffer and not self._eof:
            await self._wait()
        if not self._buffer and self._error is not None:
            raise self._error
        return self._take(n)

    async def readexactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if self._eof:
                partial = self._take(len(self._buffer))
                raise IncompleteReadError(partial, n)
            await self._wait()
        return self._take(n)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        offset = 0
        while True:
            at = self._buffer.find(separator, offset)
            if at >= 0:
                end = at + len(separator)
                if end > self._limit:
                    raise LimitOverrunError("separator is found, but chunk is longer than limit", at)
                return self._take(end)
            offset = max(0, len(self._buffer) + 1 - len(separator))
            if offset > self._limit:
                raise LimitOverrunError("separator is not found, and chunk exceeds the limit", offset)
            if self._eof:
                raise IncompleteReadError(self._take(len(self._buffer)), None)
            await self._wait()

    async def readline(self) -> bytes:
        try:
            return await self.readuntil(b"\n")
        except IncompleteReadError as exc:
            return exc.partial
        except LimitOverrunError as exc:
            if self._buffer.startswith(b"\n", exc.consumed):
                del self._buffer[: exc.consumed + 1]
            else:
                self._buffer.clear()
            raise ValueError(exc.args[0]) from None


class StreamWriter:
    """Sends on a connection: directly when the socket takes it, else buffered until writable."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._high = 64 * 1024
        self._low = 16 * 1024
        self._drainers: list[Future] = []

    def set_write_buffer_limits(self, high: int) -> None:
        self._high, self._low = high, high // 4

    def write(self, data: bytes) -> None:
        self._conn.send(data)

    async def drain(self) -> None:
        conn = self._conn
        if conn.error is not None or conn.closed:
            raise ConnectionResetError("connection lost")
        while len(conn.outgoing) > self._high:
            waiter = Future(conn.loop)
            self._drainers.append(waiter)
            await waiter
            if conn.error is not None or conn.closed:
                raise ConnectionResetError("connection lost")

    def _wake(self, everyone: bool = False) -> None:
        if self._drainers and (everyone or len(self._conn.outgoing) <= self._low):
            drainers, self._drainers = self._drainers, []
            for waiter in drainers:
                if not waiter.done():
                    waiter.set_result(None)

    def close(self) -> None:
        self._conn.close()


class Connection:
    """One accepted TCP socket, shared by its StreamReader and StreamWriter."""

    def __init__(self, loop: Loop, sock: Socket, limit: int) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.outgoing = bytearray()
        self.error: BaseException | None = None
        self.closed = False
        self._closing = False
        self._reading = False
        self.reader = StreamReader(self, limit)
        self.writer = StreamWriter(self)
        self.resume_reading()

    def resume_reading(self) -> None:
        if not self._reading and not self.reader._eof and not self._closing:
            self._reading = True
            self.loop.add_reader(self.fd, self._on_readable)

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self.loop.remove_reader(self.fd)

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(256 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        if data:
            self.reader._feed(data)
        else:
            self.pause_reading()
            self.reader._feed_eof()

    def send(self, data: bytes) -> None:
        if self.error is not None or self._closing or not data:
            return
        if not self.outgoing:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fail(exc)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]  # type: ignore[assignment]
            self.loop.add_writer(self.fd, self._on_writable)
        self.outgoing += data

    def _on_writable(self) -> None:
        try:
            sent = self.sock.send(self.outgoing)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        del self.outgoing[:sent]
        self.writer._wake()
        if not self.outgoing:
            self.loop.remove_writer(self.fd)
            if self._closing:
                self._close_now()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.outgoing.clear()
        self._close_now()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.pause_reading()
        if not self.outgoing:
            self._close_now()

    def _close_now(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._closing = True
        self.pause_reading()
        self.loop.remove_writer(self.fd)
        self.reader._feed_eof(self.error)
        self.writer._wake(everyone=True)
        self.sock.close()


class Server:
    def __init__(
        self,
        loop: Loop,
        sock: Socket,
        handler: Callable[[StreamReader, StreamWriter], Coroutine[Any, Any, None]],
        limit: int,
    ) -> None:
        self._loop = loop
        self.sockets = [sock]
        self._handler = handler
        self._limit = limit
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        listener = self.sockets[0]
        for _ in range(100):
            try:
                fd, _ = listener._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:  # EMFILE and the like: keep serving those already connected
                sys.stderr.write(f"envd: accept failed: {exc}\n")
                return
            sock = Socket(listener.family, listener.type, listener.proto, fileno=fd)
            sock.setblocking(False)
            if sock.family in (AF_INET, AF_INET6):
                sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
            conn = Connection(self._loop, sock, self._limit)
            self._loop.create_task(self._handler(conn.reader, conn.writer)).add_done_callback(_check_task)

    def close(self) -> None:
        sock = self.sockets[0]
        if sock.fileno() >= 0:
            self._loop.remove_reader(sock.fileno())
            sock.close()


def _check_task(task: Future) -> None:
    if task.cancelled() or task.exception() is None:
        return
    try:
        raise task.exception()  # type: ignore[misc]
    except BaseException:
        _report("a connection's task")


async def start_server(
    handler: Callable[[StreamReader, StreamWriter], Coroutine[Any, Any, None]],
    *,
    sock: Socket,
    limit: int = 64 * 1024,
) -> Server:
    """Serve connections accepted on the listening, non-blocking `sock`."""
    return Server(get_running_loop(), sock, handler, limit)

"""envd's own event loop (`envd/aio.py`): the asyncio semantics envd's coroutines rely on."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from wrenn_platform.envd import aio


def test_cancel_reaches_the_await_and_the_awaited_future() -> None:
    async def main() -> tuple[bool, bool, str]:
        inner = aio.get_running_loop().create_future()
        seen: list[str] = []

        async def child() -> None:
            try:
                await inner
            except aio.CancelledError:
                seen.append("cancelled at await")
                raise

        task = aio.create_task(child())
        await aio.sleep(0)
        task.cancel()
        results = await aio.gather(task, return_exceptions=True)
        return task.cancelled(), inner.cancelled(), f"{seen[0]}/{type(results[0]).__name__}"

    assert aio.run(main()) == (True, True, "cancelled at await/CancelledError")


def test_wait_first_completed_with_timeout_cancels_nothing() -> None:
    async def main() -> None:
        loop = aio.get_running_loop()
        slow = aio.ensure_future(aio.sleep(10))
        never = loop.create_future()
        done, pending = await aio.wait({slow, never}, timeout=0.05, return_when=aio.FIRST_COMPLETED)
        assert not done and pending == {slow, never} and not slow.cancelled()
        quick = aio.ensure_future(aio.sleep(0.01))
        done, pending = await aio.wait({quick, never}, timeout=5, return_when=aio.FIRST_COMPLETED)
        assert done == {quick} and pending == {never}
        slow.cancel()
        started = loop.time()
        done, _ = await aio.wait([slow])  # ALL_COMPLETED, no timeout
        assert done == {slow} and loop.time() - started < 1

    aio.run(main())


def test_cancelled_timers_do_not_pile_up() -> None:
    """Each streamed process waits with a 30 s keepalive timeout that is cancelled at once."""

    async def main() -> int:
        loop = aio.get_running_loop()
        for _ in range(5000):
            ready = loop.create_future()
            ready.set_result(None)
            await aio.wait({ready, loop.create_future()}, timeout=30, return_when=aio.FIRST_COMPLETED)
        return len(loop._timers)

    assert aio.run(main()) <= 300


def test_executor_results_errors_and_threads() -> None:
    async def main() -> None:
        loop = aio.get_running_loop()
        assert await loop.run_in_executor(None, pow, 2, 10) == 1024
        with pytest.raises(ZeroDivisionError):
            await loop.run_in_executor(None, divmod, 1, 0)
        main_thread = threading.get_ident()
        pool = aio.ThreadPool(2, initializer=os.getpid)
        idents = await aio.gather(*(loop.run_in_executor(pool, threading.get_ident) for _ in range(20)))
        assert main_thread not in idents and len(set(idents)) <= 2
        pool.shutdown()
        broken = aio.ThreadPool(1, initializer=divmod, initargs=(1, 0))
        with pytest.raises(RuntimeError, match="initializer failed"):
            await loop.run_in_executor(broken, pow, 2, 2)
        broken.shutdown()

    aio.run(main())


def test_streams_and_server() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    seen: list[object] = []

    async def handle(reader: aio.StreamReader, writer: aio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        seen.append(await reader.readexactly(3))
        seen.append(await reader.readline())
        try:
            await reader.readuntil(b"\n")
        except aio.LimitOverrunError as exc:
            seen.append(("limit", exc.consumed > 64))
        writer.write(b"x" * 3_000_000)  # more than the socket takes at once
        await writer.drain()
        writer.close()

    def client() -> bytes:
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"HEAD\r\n\r\nabcline\n" + b"y" * 200)
            received = b""
            while data := c.recv(1 << 20):
                received += data
            return received

    async def main() -> bytes:
        server = await aio.start_server(handle, sock=listener, limit=64)
        got = await aio.get_running_loop().run_in_executor(None, client)
        server.close()
        return got

    got = aio.run(main())
    assert len(got) == 3_000_000
    assert seen == [b"HEAD\r\n\r\n", b"abc", b"line\n", ("limit", True)]


def test_incomplete_read_at_eof() -> None:
    left, right = socket.socketpair()
    right.sendall(b"partial")
    right.close()

    async def main() -> bytes:
        conn = aio.Connection(aio.get_running_loop(), left, 1024)  # type: ignore[arg-type]
        with pytest.raises(aio.IncompleteReadError) as exc:
            await conn.reader.readexactly(100)
        conn.writer.close()
        return exc.value.partial

    left.setblocking(False)
    assert aio.run(main()) == b"partial"

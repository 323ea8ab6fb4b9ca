"""Guest operations of one capsule, forwarded to its envd (`envd_client.EnvdClient`), translated to
the agent's wire shapes: exec results with their encoding, the contract's stream messages, PTY
sessions, file streams.

`on_output` is called for every chunk of process output seen, so output counts as activity.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from wrenn_platform.wire.agent import (
    ExecRequest,
    FileEntry,
    GuestError,
    ProcessEntry,
    PtyConnect,
    PtyStart,
    StreamStart,
)


class StreamSession:
    """A process started over the exec stream: iterate for messages, `stop()` to kill it."""

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class PtySession:
    tag: str
    pid: int

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        raise NotImplementedError

    async def send_input(self, data: bytes) -> None:
        raise NotImplementedError

    async def resize(self, cols: int, rows: int) -> None:
        raise NotImplementedError

    async def kill(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Detach; the PTY process keeps running."""
        raise NotImplementedError


class Guest:
    def __init__(self, envd_url: str, access_token: str, on_output: Callable[[], None]) -> None:
        self.envd_url = envd_url
        self.access_token = access_token
        self.on_output = on_output

    async def aclose(self) -> None:
        pass

    async def run(self, req: ExecRequest) -> dict[str, Any]:
        raise GuestError("not implemented")

    async def start_background(self, req: ExecRequest) -> tuple[int, str]:
        raise GuestError("not implemented")

    async def list_processes(self) -> list[ProcessEntry]:
        raise GuestError("not implemented")

    async def kill(self, selector: str, signal: str) -> None:
        raise GuestError("not implemented")

    def connect(self, selector: str) -> AsyncIterator[dict[str, Any]]:
        raise GuestError("not implemented")

    async def exec_stream(self, start: StreamStart) -> StreamSession:
        raise GuestError("not implemented")

    async def pty(self, first: PtyStart | PtyConnect) -> PtySession:
        raise GuestError("not implemented")

    async def read_file(self, path: str) -> AsyncIterator[bytes]:
        raise GuestError("not implemented")

    async def write_file(self, path: str, chunks: AsyncIterator[bytes]) -> None:
        raise GuestError("not implemented")

    async def list_dir(self, path: str, depth: int) -> list[FileEntry]:
        raise GuestError("not implemented")

    async def make_dir(self, path: str) -> FileEntry:
        raise GuestError("not implemented")

    async def remove(self, path: str) -> None:
        raise GuestError("not implemented")

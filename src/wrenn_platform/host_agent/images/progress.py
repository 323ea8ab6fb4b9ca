"""How a build reports progress: a small protocol, a silent reporter and a rich one."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Reporter(Protocol):
    def phase(self, title: str, total: int | None = None) -> None:
        """A new phase starts; `total` steps when known."""
        ...

    def step(self, detail: str = "") -> None:
        """One step of the current phase is done (e.g. one package unpacked)."""
        ...

    def note(self, message: str) -> None:
        """A line worth showing to a person (cache hits, waits, results)."""
        ...


class SilentReporter:
    def phase(self, title: str, total: int | None = None) -> None:
        pass

    def step(self, detail: str = "") -> None:
        pass

    def note(self, message: str) -> None:
        pass


class RichReporter:
    """One progress line per phase: spinner, title, bar when the total is known, elapsed time."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description:<28}[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[dim]{task.fields[detail]}[/dim]"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self._finish_task()
        self._progress.stop()

    def _finish_task(self) -> None:
        if self._task is None:
            return
        task = next(t for t in self._progress.tasks if t.id == self._task)
        total = task.total if task.total is not None else max(task.completed, 1)
        self._progress.update(self._task, total=total, completed=total, detail="")
        self._task = None

    def phase(self, title: str, total: int | None = None) -> None:
        self._finish_task()
        self._task = self._progress.add_task(title, total=total, detail="")

    def step(self, detail: str = "") -> None:
        if self._task is None:
            self.phase("working")
        assert self._task is not None
        self._progress.update(self._task, advance=1, detail=detail[:40])

    def note(self, message: str) -> None:
        self._progress.console.print(message)

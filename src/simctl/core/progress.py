"""Progress while ``start(block=True)`` waits, in a terminal or a Jupyter
notebook (rich draws a live widget there): one bar per entity, labelled with
it, counting its jobs done and those that failed. An entity that runs until
stopped (a store) has no bar: it does not end by itself."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

#: per entity: (label, jobs done, jobs failed, jobs in all, runs until stopped)
Row = tuple[str, int, int, int, bool]


def describe(label: str, failed: int) -> str:
    """A bar's label: the entity, and how many of its jobs failed (if any)."""
    return f"{label} [red]({failed} failed)[/red]" if failed else label


@contextlib.contextmanager
def progress_ticker(rows: Callable[[], list[Row]], enabled: bool,
                    console: Any = None) -> Iterator[Callable[[int, int], None]]:
    """Yield ``tick(done, total)``: each call redraws one bar per entity
    ``rows()`` names; nothing is drawn unless ``enabled``."""
    if not enabled:
        yield lambda done, total: None
        return
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=False, console=console) as bar:
        tasks: dict[str, Any] = {}

        def tick(_done: int, _total: int) -> None:
            for label, done, failed, total, until_stopped in rows():
                if until_stopped:
                    continue  # no bar for a store: it runs until stopped
                if label not in tasks:
                    tasks[label] = bar.add_task(describe(escape(label), failed), total=total)
                bar.update(tasks[label], completed=done, total=total, description=describe(escape(label), failed))

        yield tick
        tick(0, 0)  # the last state, drawn once more before the display ends

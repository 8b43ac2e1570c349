"""The status table, shared by ``Experiment.summary`` and ``simctl status``."""

from __future__ import annotations

from collections.abc import Sequence

from .logs import shown_status
from .manifest import JobRecord

HEADERS = ("Name", "Entity-Type", "JobID", "RunID", "Time", "Status", "Returncode", "Reason")


def duration(seconds: float | None) -> str:
    """A duration with its unit, in one word: ``0.42s``, ``12.3s``, ``3m07s``, ``2h05m``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def rows(records: Sequence[JobRecord], paths: bool = False) -> list[tuple[str, ...]]:
    """One row per record, as :data:`HEADERS` (and the run directory with ``paths``)."""
    out: list[tuple[str, ...]] = []
    for r in records:
        row = (r.name, r.entity_type + (f" ({r.ensemble})" if r.ensemble else ""), r.job_id or "-",
               str(r.run), duration(r.elapsed), shown_status(r),
               "-" if r.returncode is None else str(r.returncode), r.reason)
        out.append(row + ((r.path or "-",) if paths else ()))
    return out


def render_table(records: Sequence[JobRecord]) -> str:
    """A plain-text table (no colours), fine in logs and files."""
    body = rows(records)
    widths = [max([len(h)] + [len(row[i]) for row in body]) for i, h in enumerate(HEADERS)]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
    return "\n".join([fmt(HEADERS), fmt(tuple("-" * w for w in widths)), *map(fmt, body)])

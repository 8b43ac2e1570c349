"""The status table, shared by ``Experiment.summary`` and ``simctl status``."""

from __future__ import annotations

from collections.abc import Sequence

from .manifest import JobRecord

HEADERS = ("Name", "Entity-Type", "JobID", "RunID", "Time", "Status", "Returncode", "Reason")


def rows(records: Sequence[JobRecord]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for r in records:
        elapsed = r.elapsed
        out.append((r.name, r.entity_type + (f" ({r.ensemble})" if r.ensemble else ""), r.job_id or "-",
                    str(r.run), "-" if elapsed is None else f"{elapsed:.3f}", str(r.status),
                    "-" if r.returncode is None else str(r.returncode), r.reason))
    return out


def render_table(records: Sequence[JobRecord]) -> str:
    """A plain-text table (no colours), fine in logs and files."""
    body = rows(records)
    widths = [max([len(h)] + [len(row[i]) for row in body]) for i, h in enumerate(HEADERS)]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
    return "\n".join([fmt(HEADERS), fmt(tuple("-" * w for w in widths)), *map(fmt, body)])

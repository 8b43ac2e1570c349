"""Job statuses shared by every launcher."""

from __future__ import annotations

import enum

import attrs


class Status(str, enum.Enum):
    """The life of one job, as every launcher reports it."""

    NEW = "New"
    QUEUED = "Queued"
    RUNNING = "Running"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    NEVER_STARTED = "NeverStarted"
    UNKNOWN = "Unknown"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """True once the job will not change any more."""
        return self in TERMINAL


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.NEVER_STARTED})


@attrs.frozen
class JobStatus:
    """What a launcher knows of one job: its status, return code and why."""

    status: Status
    returncode: int | None = None
    reason: str = ""
    #: the launcher's own word for the state (``PENDING``, ``R``, ``PSUSP``...)
    raw: str = ""
    #: the launcher gives up on this job (it vanished): stop watching it even
    #: though its status is not a final one
    final: bool = False

    @property
    def done(self) -> bool:
        """True once the job will not be watched any more."""
        return self.status.is_terminal or self.final

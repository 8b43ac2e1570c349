"""``smartsim.status``: SmartSim's status names, each simctl's :class:`simctl.Status`."""

import simctl

Status = simctl.Status


class SmartSimStatus:
    """SmartSim's ``SmartSimStatus.STATUS_*`` names for simctl's statuses."""

    STATUS_RUNNING = Status.RUNNING
    STATUS_COMPLETED = Status.COMPLETED
    STATUS_CANCELLED = Status.CANCELLED
    STATUS_FAILED = Status.FAILED
    STATUS_NEW = Status.NEW
    STATUS_PAUSED = Status.PAUSED
    STATUS_NEVER_STARTED = Status.NEVER_STARTED
    STATUS_QUEUED = Status.QUEUED


TERMINAL_STATUSES = {Status.CANCELLED, Status.COMPLETED, Status.FAILED}

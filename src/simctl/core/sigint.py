"""Ctrl-C (SIGINT) around the few stretches that must not be cut in the
middle: a launch (every process it started is recorded before the
KeyboardInterrupt, so it can be stopped) and a stop (a second Ctrl-C would
leave jobs running untracked). Both act in the main thread only, where
Python delivers signals; elsewhere they do nothing."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


def _main() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def ignoring_sigint() -> Iterator[None]:
    """Ignore Ctrl-C inside the block."""
    if not _main():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def holding_sigint() -> Iterator[None]:
    """Hold Ctrl-C inside the block: a SIGINT that arrives meanwhile is
    delivered again, once, to the handler that was in place, when the block
    ends (a KeyboardInterrupt from there, with Python's own handler)."""
    if not _main():
        yield
        return
    held: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if held:
            signal.raise_signal(signal.SIGINT)

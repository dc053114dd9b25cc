"""Holding Ray's task cancellation off a first import.

Ray cancels a running task by raising ``KeyboardInterrupt`` in its worker's main thread
(a SIGINT), and Ray Data cancels the tasks still running upstream once an operator has all
it needs (a ``limit`` reached, an execution finished early). A task interrupted in the
middle of importing a package leaves some of its modules initialised and some missing in
``sys.modules``; Ray then reuses the worker process, and every later import of that package
there fails ("partially initialized module ... has no attribute ..."), so every later data
task on that worker fails with it. Imports that a data task may be the first to run go
through :func:`interrupts_deferred`: the cancellation still happens, once the import is whole.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT until the block ends, then raise ``KeyboardInterrupt`` if one came.

    Signals reach only the main thread, so elsewhere this does nothing. An exception from
    the block propagates unchanged (the held interrupt is dropped with it: the task fails
    either way)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt("interrupted while a first import ran; raised once it ended")

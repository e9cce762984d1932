"""Worker processes that end with the process that started them. Imports nothing heavy: the
demo library's render workers, which need no torch, use it too."""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["ORPHAN_CHECK_S", "end_with_parent", "leave_interrupts_to_parent", "worker_started",
           "stop_workers"]


#: seconds between a worker's looks at whether the process that started it is still there
ORPHAN_CHECK_S = 1.0


def end_with_parent(parent: int) -> None:
    """End this worker when ``parent``, the process that started the pool, is gone.

    A pool's workers end when the pool is shut down, and when its process is interrupted from
    the terminal (the signal reaches the whole process group). But ``kill PID`` of ``soundatlas
    index`` left its workers blocked for good on the result pipe that no one read any more,
    holding some 450 MB each. A daemon thread ends the worker once ``parent`` no longer runs or
    the worker was handed to another parent (``os.getppid`` changes when its parent dies). The
    worker's own parent need not be ``parent``: a ``forkserver`` pool's workers are the fork
    server's children, and it ends with ``parent``.
    """
    own = os.getppid()

    def gone() -> bool:
        if os.getppid() != own:
            return True
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return True
        except OSError:  # it runs, as another user
            pass
        return False

    def watch() -> None:
        tick = threading.Event()
        while not gone():
            tick.wait(ORPHAN_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="soundatlas-orphan-check").start()


def leave_interrupts_to_parent() -> None:
    """Ignore Ctrl-C in this worker. The terminal sends it to the whole process group, and the
    parent, which gets it too, stops the pool and says how to go on; a worker that took it too
    printed a traceback of its own, waiting on the pool's queue."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_started(parent: int) -> None:
    """A pool worker's start: it ends with ``parent`` (:func:`end_with_parent`) and leaves Ctrl-C
    to it (:func:`leave_interrupts_to_parent`)."""
    end_with_parent(parent)
    leave_interrupts_to_parent()


def stop_workers(pool) -> None:
    """End a ``ProcessPoolExecutor``'s workers now (SIGTERM), on Ctrl-C: they leave the
    interrupt to the parent (:func:`leave_interrupts_to_parent`), and a batch already handed
    to one would otherwise run to its end, minutes for long files, before the pool let the
    command stop."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.terminate()
        except (OSError, ValueError):  # already gone, or closed
            pass

"""Bench's workers end with bench: SIGINT, SIGTERM and SIGHUP kill every live worker's process group first.

Process-wide, as signal handlers are. A :class:`~binexport.runtimes.worker.Worker`
registers itself (:func:`register`) the moment its process exists, so no signal
can leave one unkilled: while a worker is being started (or the others killed)
the handler only records the signal, and it is raised right after.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from binexport.errors import Interrupted

#: Signals after which bench ends its workers before it exits (one line on stderr, exit 128 + the signal).
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class Killable(Protocol):
    def kill(self) -> None: ...


class Stop:
    """The workers alive, and a signal that came while one was starting (class state: handlers are global)."""

    live: list[Killable] = []
    defer: bool = False
    pending: int = 0

    @classmethod
    def handler(cls, signum: int, frame: Any) -> None:
        if cls.defer:
            cls.pending = cls.pending or signum
            return
        raise interrupted(signum)

    @classmethod
    def raise_pending(cls) -> None:
        cls.defer = False
        if cls.pending:
            signum, cls.pending = cls.pending, 0
            raise interrupted(signum)

    @classmethod
    def kill_all(cls) -> None:
        """SIGKILL every live worker's process group, a second signal waiting until all are gone."""
        cls.defer = True
        try:
            while cls.live:
                cls.live.pop().kill()
        finally:
            cls.defer = False


def interrupted(signum: int) -> Interrupted:
    """The one-line error a stop signal becomes (exit 128 + its number)."""
    name = signal.Signals(signum).name
    return Interrupted(signum, f"interrupted by {name}; the benchmark workers were stopped")


@contextlib.contextmanager
def starting() -> Iterator[None]:
    """While a worker's process starts: a signal waits, then is raised once the worker is registered."""
    Stop.defer = True
    try:
        yield
    finally:
        Stop.raise_pending()


def register(worker: Killable) -> None:
    """Count ``worker`` among the live ones (inside :func:`starting`)."""
    Stop.live.append(worker)


def unregister(worker: Killable) -> None:
    """``worker`` is gone: no longer killed on a signal."""
    if worker in Stop.live:
        Stop.live.remove(worker)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While bench runs: SIGINT, SIGTERM and SIGHUP end every worker (their process groups), then bench.

    The handlers are set explicitly, whatever the process inherited (under ``nohup`` SIGHUP is ignored, in a
    background job SIGINT), and the previous ones are put back. Off the main thread (where Python can't set
    handlers) the workers still end on any exception.
    """
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            previous[s] = signal.signal(s, Stop.handler)
    try:
        yield
    except BaseException:
        Stop.kill_all()
        raise
    finally:
        Stop.kill_all()
        for s, h in previous.items():
            signal.signal(s, h)
        Stop.pending = 0

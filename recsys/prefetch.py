"""Run an iterator one step ahead in a thread, so producing the next item overlaps with
consuming this one: parsing a CSV chunk while the database takes in the previous one.

This pays only where both sides release the GIL for their heavy work, as Arrow's compute
kernels and a driver waiting on its socket do.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar, cast

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """The items of `items`, produced by a worker thread at most `depth` ahead.

    An exception in the producer is raised in the consumer at the point it occurred; a
    consumer that stops early (an exception, a `break`) stops the producer too.
    """
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    source = iter(items)

    def produce() -> None:
        try:
            for item in source:
                if not put(item):
                    break
            else:
                put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_Failed(exc))
        finally:
            close = getattr(source, "close", None)  # a generator's files, closed here
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield cast(T, item)
    finally:
        stop.set()
        worker.join()

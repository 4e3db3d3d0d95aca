"""prefetch: order kept, errors surface where they happened, an early stop stops the producer."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from recsys.prefetch import prefetch


def test_items_arrive_in_order_from_another_thread() -> None:
    threads: set[str] = set()

    def produce() -> Iterator[int]:
        for n in range(100):
            threads.add(threading.current_thread().name)
            yield n

    assert list(prefetch(produce(), depth=3)) == list(range(100))
    assert threads == {"prefetch"}


def test_an_error_in_the_producer_is_raised_after_the_items_before_it() -> None:
    def produce() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("line 3 is bad")

    seen: list[int] = []
    with pytest.raises(ValueError, match="line 3 is bad"):
        for n in prefetch(produce()):
            seen.append(n)
    assert seen == [1, 2]


def test_a_consumer_that_stops_early_stops_and_closes_the_producer() -> None:
    closed = threading.Event()
    produced: list[int] = []

    def produce() -> Iterator[int]:
        try:
            for n in range(1_000_000):
                produced.append(n)
                yield n
        finally:
            closed.set()

    for n in prefetch(produce(), depth=2):
        if n == 5:
            break
    assert closed.is_set()  # the worker was joined before the loop ended
    assert len(produced) <= 5 + 1 + 2 + 1  # at most depth items ahead of the consumer

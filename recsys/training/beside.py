"""Work that a training run starts early and collects late: on small data in one process, in
a thread of its own beside the caller's steps; otherwise when its result is first asked.

On MovieLens with 2 cores a step's matrices are small: one stream of steps keeps about 1.6
cores busy however many threads torch has (`recsys train` took 13.4 s on one thread, 12.0 s on
two), so two streams side by side use the machine better than two threads on one. At scale a
step fills the cores, and two streams would add up their memory.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

import torch

from recsys.train_config import TrainConfig
from recsys.training.distributed import World
from recsys.training.trainer import pick_device

T = TypeVar("T")

BESIDE_MAX_RATINGS = 2_000_000
"""Up to this many ratings, in one process, work that can go beside the caller's does."""


def fits_beside(n_ratings: int, world: World | None) -> bool:
    """Whether work on `n_ratings` ratings may run in a thread beside the caller's: in one
    process (torchrun's ranks must take their collectives in the same order) on small data."""
    return world is None and n_ratings <= BESIDE_MAX_RATINGS


def trains_beside(n_ratings: int, config: TrainConfig, world: World | None) -> bool:
    """Whether training on `n_ratings` may run beside the caller's: as `fits_beside`, on the
    CPU, where torch has threads to share between the two."""
    return (
        fits_beside(n_ratings, world)
        and pick_device(config.device).type == "cpu"
        and torch.get_num_threads() > 1
    )


class Beside(Generic[T]):
    """`work()`, run once; `result()` gives what it returned, or raises what it raised.

    With `beside`, entering the context starts it in a thread of its own (with
    `share_threads`, that thread and the caller each take half of torch's threads until the
    result is in); otherwise the first `result()` runs it in the caller. Leaving the context
    waits for the thread, so that no work is left running after a failure, and gives the
    caller back its torch threads."""

    def __init__(
        self, work: Callable[[], T], *, beside: bool, name: str, share_threads: bool = False
    ) -> None:
        self._work = work
        self.beside = beside
        self._name = name
        self._threads = torch.get_num_threads()
        self._share = max(1, self._threads // 2) if share_threads else None
        self._future: Future[T] | None = None
        self._done: tuple[T] | None = None

    def __enter__(self) -> Beside[T]:
        if self.beside and self._future is None:
            pool = ThreadPoolExecutor(1, thread_name_prefix=self._name)
            self._future = pool.submit(self._in_thread)
            pool.shutdown(wait=False)
            if self._share is not None:
                torch.set_num_threads(self._share)  # per thread: the caller's, until the end
        return self

    def _in_thread(self) -> T:
        if self._share is not None:
            torch.set_num_threads(self._share)
        return self._work()

    def reclaim(self) -> None:
        """Give the caller back its torch threads if the thread has finished, without
        waiting for it: a caller that polls this between steps does not run its last steps
        on half the cores."""
        if self._future is not None and self._future.done():
            self._give_back()

    def result(self) -> T:
        if self._done is None:
            self._done = (self._work() if self._future is None else self._future.result(),)
            self._give_back()
        return self._done[0]

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._future is not None:
            self._future.exception()  # waits; a failure of its own was raised by result()
        self._give_back()

    def _give_back(self) -> None:
        if self._share is not None:
            torch.set_num_threads(self._threads)

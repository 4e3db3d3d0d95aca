"""Training keeps freed memory for reuse: the same large temporaries allocated again and again
cost no fresh pages from the kernel (recsys.training.heap)."""

from __future__ import annotations

import resource

import numpy as np
import pytest

from recsys.training.heap import keep_freed_memory


def _page_faults_of_reallocating() -> int:
    """Minor page faults of allocating, filling and freeing three 16 MB arrays ten times: what
    validation does each epoch with its users x items scores."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        arrays = [np.ones(4 << 20, dtype=np.float32) for _ in range(3)]
        del arrays
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_reallocated_temporaries_reuse_the_heap() -> None:
    if not keep_freed_memory():
        pytest.skip("not glibc: its malloc thresholds do not exist here")
    assert keep_freed_memory()  # set once, and idempotent
    _page_faults_of_reallocating()  # the heap grows to hold them once
    # Each cycle fills 48 MB: 12,288 pages if they came fresh from the kernel.
    assert _page_faults_of_reallocating() < 1_000

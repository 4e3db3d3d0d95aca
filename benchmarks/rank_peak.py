"""`recsys` as a torchrun rank that reports its own peak memory when it exits:

    torchrun --standalone --nproc-per-node 2 -m benchmarks.rank_peak train --distributed

torchrun's own ru_maxrss of its children is the largest one, not each rank's; this prints
`rank R peak RSS X GB` on stderr at exit, for each rank.
"""

from __future__ import annotations

import atexit
import os
import resource
import sys

from recsys.cli import main


def _report() -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"rank {os.environ.get('RANK', '0')} peak RSS {peak:.2f} GB", file=sys.stderr, flush=True)


if __name__ == "__main__":
    atexit.register(_report)
    main()

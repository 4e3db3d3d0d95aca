"""How long the command line takes to answer --help (issue 18: under 1 s).

    .venv/bin/python -m benchmarks.cli_start [--runs 5]

Each command runs `--runs` times in a fresh process; the median wall time is printed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

from benchmarks.harness import RECSYS

COMMANDS = (
    ["--help"],
    ["serve", "--help"],
    ["train", "--help"],
    ["models", "list", "--help"],
    ["simulate-traffic", "--help"],
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for command in COMMANDS:
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            subprocess.run([RECSYS, *command], check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
        print(f"recsys {' '.join(command):<28} median {statistics.median(times):.2f} s")


if __name__ == "__main__":
    main()

"""Lines per second of a followed workload log through the Python package
(``Host.follow_logs``, iterated), for scripts/bench-follow.sh.

Usage: python bench_follow.py CONFIG NAME SECONDS   (prints a number)
"""

from __future__ import annotations

import sys
import time

import lobster


def main() -> None:
    config, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with lobster.Host(config).follow_logs(name, lines=0) as stream:
        next(stream)  # the stream runs
        lines, start = 0, time.monotonic()
        for _ in stream:
            lines += 1
            if time.monotonic() - start >= seconds:
                break
        print(f"{lines / (time.monotonic() - start):.0f}")


if __name__ == "__main__":
    main()

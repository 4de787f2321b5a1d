"""Call overhead of Host.list() / Host.list_async() on an empty and a
100-tenant registry, next to reading the same registry with json.load;
or, with ``--config``, on that host alone (one row, for
scripts/bench-bindings.sh).

Each figure is the fastest of BATCHES batches (mean per call within a
batch), which filters out other load on a shared machine.

Usage: python bench_list.py [--calls N] [--config CONFIG]   (prints numbers; asserts nothing)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import lobster  # noqa: E402
from fixtures import TempHost  # type: ignore[import-not-found]  # noqa: E402


BATCHES = 10


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    fn()  # warm up (starts the runtime on first use)
    batch = max(1, calls // BATCHES)
    best = float("inf")
    for _ in range(BATCHES):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        best = min(best, (time.perf_counter() - start) / batch)
    return best * 1e6


def per_call_async_us(host: lobster.Host, calls: int) -> float:
    async def run() -> float:
        await host.list_async()
        batch = max(1, calls // BATCHES)
        best = float("inf")
        for _ in range(BATCHES):
            start = time.perf_counter()
            for _ in range(batch):
                await host.list_async()
            best = min(best, (time.perf_counter() - start) / batch)
        return best * 1e6

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--config", type=Path, help="measure this host only: `list() list_async()` in us")
    args = parser.parse_args()
    if args.config is not None:
        host = lobster.Host(args.config)
        print(f"{per_call_us(host.list, args.calls):.1f} {per_call_async_us(host, args.calls):.1f}")
        return
    print(f"lobster {lobster.__version__}, python {sys.version.split()[0]}, {args.calls} calls each")
    print(f"{'tenants':>8} {'list() us':>10} {'list_async() us':>16} {'json.load us':>13}")
    for count in (0, 100):
        with tempfile.TemporaryDirectory() as root:
            temp = TempHost(Path(root))
            temp.write_config({"paths": {"state_dir": "state"}})
            temp.seed([f"tenant-{i:03}" for i in range(count)])
            host = lobster.Host(temp.config)
            assert len(host.list()) == count
            sync_us = per_call_us(host.list, args.calls)
            async_us = per_call_async_us(host, args.calls)
            registry = temp.registry

            def load() -> object:
                with open(registry) as f:
                    return json.load(f)

            json_us = per_call_us(load, args.calls)
            print(f"{count:>8} {sync_us:>10.1f} {async_us:>16.1f} {json_us:>13.1f}")

if __name__ == "__main__":
    main()

"""`make bench`: every benchmark in one run, one section each (numbers are measured in this run; run
them on an otherwise idle machine, since two busy cores distort every figure)."""
from __future__ import annotations

import importlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

BENCHMARKS = ["bench_model", "bench_nki_cpu", "bench_decode_step", "bench_kernels", "bench_cost_model"]


def main() -> None:
    names = sys.argv[1:] or BENCHMARKS
    for name in names:
        start = time.perf_counter()
        importlib.import_module(name).main()
        print(f"  ({name}: {time.perf_counter() - start:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()

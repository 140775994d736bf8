"""Where the interpreter's time goes: cProfile over every thread (grid instances run on their own threads).

    PYTHONPATH=src python benchmarks/profile_interp.py experts [tottime|cumulative]
    PYTHONPATH=src python benchmarks/profile_interp.py decode  [tottime|cumulative]

`experts`: the real-shape grouped_v2 decode experts kernel (TP=4 per-rank shapes, batch 1), 5 launches;
`decode`: one decode step of the slice at TP=4 with every decode NKI variant (bench_decode_step), 3 steps.
"""
from __future__ import annotations

import cProfile
import os
import pstats
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def profiled(work, repeats: int) -> pstats.Stats:
    """Run `work` `repeats` times with every thread started meanwhile profiled too."""
    profiles = [cProfile.Profile()]
    original = threading.Thread.run

    def run(thread):
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.runcall(original, thread)

    threading.Thread.run = run
    try:
        for _ in range(repeats):
            profiles[0].runcall(work)
    finally:
        threading.Thread.run = original
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        stats.add(profile)
    return stats


def experts_work():
    import bench_kernels
    from kernels.examples import example_call
    from kernels.registry import get
    from kernels.executors import interpret
    from kernels.types import Phase

    variant = get("experts", "grouped_v2")
    call = example_call("experts", Phase.TOKEN, bench_kernels.real_shapes(128, Phase.TOKEN), seed=0,
                        transposed=variant.transpose_weights)
    params = variant.make_params()
    return lambda: interpret(variant, params, call.args, "trn2")


def decode_work():
    from bench_decode_step import DecodeStep

    step = DecodeStep()
    return lambda: step.run("interp")


WORK = {"experts": (experts_work, 5), "decode": (decode_work, 3)}


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "experts"
    order = sys.argv[2] if len(sys.argv) > 2 else "tottime"
    make, repeats = WORK[name]
    work = make()
    work()  # warm-up
    profiled(work, repeats).sort_stats(order).print_stats(40)


if __name__ == "__main__":
    main()

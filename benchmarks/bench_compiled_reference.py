"""The accuracy stage's reference cost: generating the reference logits with the `compiled` baseline against the
`baseline` (eager) one, on the default workload (or the given Hydra overrides), interleaved, best of N.

    PYTHONPATH=src python benchmarks/bench_compiled_reference.py [overrides ...]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from judge_variants import make_job  # the script directory is on sys.path
from pipeline.stages.accuracy import REFERENCE_KERNELS

REPEATS = 3


def main(overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        job = make_job(overrides, Path(tmp))
        best = {}
        for _ in range(REPEATS):
            for name, kernels_of in REFERENCE_KERNELS.items():
                job.conf.accuracy.reference = name
                model = job.model(kernels_of(job))
                start = time.perf_counter()
                for prompt in job.prompts:
                    job.generate(model, prompt.ids, prompt.max_new_tokens, keep_logits=True)
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    for name, seconds in best.items():
        print(f"{name:9s} reference: {seconds * 1000:8.1f} ms (best of {REPEATS})")
    print(f"compiled / baseline: {best['compiled'] / best['baseline']:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])

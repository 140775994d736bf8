"""A digest of every NKI variant's outputs and traces, to show an interpreter change keeps them bit for bit.

    PYTHONPATH=src python benchmarks/interp_digest.py > before.txt   # on the old code
    PYTHONPATH=src python benchmarks/interp_digest.py > after.txt    # on the new code; diff the two

One line per (variant, phase, shapes): a hash of the output bytes from the first (interpreted) launch and from a
second (replayed) one, and the trace's instruction count, DMA bytes, MACs and the trn2/trn3 cost estimates. Shapes:
the tiny model at TP 1 and the real per-rank shapes at TP 4, context bucket 128 with a 100-token prompt and 640,
decode at KV 128 and 640.
"""
from __future__ import annotations

import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import yaml  # noqa: E402

import bench_kernels  # noqa: E402
import kernels  # noqa: E402
from kernels.examples import example_call  # noqa: E402
from kernels.executors import interpret  # noqa: E402
from kernels.types import Phase  # noqa: E402
from nki_cpu import cost  # noqa: E402


def output_hash(output) -> str:
    digest = hashlib.sha256()
    for value in output if isinstance(output, (tuple, list)) else (output,):
        if isinstance(value, torch.Tensor):
            digest.update(value.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def trace_line(traces) -> str:
    estimates = [cost.estimate(t, target=target, lnc=2).time_us for target in ("trn2", "trn3") for t in traces]
    return (f"instr {sum(len(t.instructions) for t in traces)} dma {sum(t.total_dma_bytes for t in traces)} "
            f"macs {sum(t.total_macs for t in traces)} est {' '.join(f'{e:.6f}' for e in estimates)}")


def tiny_shapes():
    preset = yaml.safe_load(open(os.path.join(HERE, "..", "conf", "model", "qwen3_moe_tiny.yaml")))
    dims = bench_kernels.ModelDims(**preset.get("model", preset)["dims"])
    return bench_kernels.TensorParallel(dims, 1).layer_shapes(1, (16,), (16,), torch.bfloat16)


def shape_sets():
    yield "tiny", {Phase.CONTEXT: [tiny_shapes()], Phase.TOKEN: [tiny_shapes()]}
    yield "real", {Phase.CONTEXT: [bench_kernels.real_shapes(b, Phase.CONTEXT) for b in (128, 640)],
                   Phase.TOKEN: [bench_kernels.real_shapes(b, Phase.TOKEN) for b in (128, 640)]}


def main() -> None:
    for name, by_phase in shape_sets():
        for variants in kernels.catalogue().values():
            for variant in (v for v in variants if v.nki):
                for phase in sorted(variant.phases, key=lambda p: p.value):
                    for shapes in by_phase[phase]:
                        call = example_call(variant.layer, phase, shapes, seed=0,
                                            transposed=variant.transpose_weights)
                        params = variant.make_params()
                        first, traces = interpret(variant, params, call.args, "trn2")
                        second, _ = interpret(variant, params, call.args, "trn2")
                        print(f"{name} {variant.layer}.{variant.name} {phase.value} {call.label}: "
                              f"{output_hash(first)} {output_hash(second)} {trace_line(traces)}", flush=True)


if __name__ == "__main__":
    main()

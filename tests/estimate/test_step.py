"""A model call's estimate is the sum of its parts, torch ops follow the roofline by hand, NKI kernels come
from the cost model on their traces (traced once per bucket), and decode never beats the weight floor."""
import pytest
from omegaconf import OmegaConf

from kernels.slots import CALLS_PER_LAYER, CALLS_PER_MODEL, KernelSet
from kernels.types import Phase
from nki_cpu import cost
from pipeline.config import CONF_DIR
from pipeline.estimate import ModelEstimator
from pipeline.estimate.graph_ops import graph_ops
from pipeline.estimate.step import CALL, CALL_OPS, LAYER, LAYER_OPS
from pipeline.estimate.tracing import bucket_shapes, trace_variant
from tests.estimate.shapes import BUCKETS, REAL, TINY, settings, shapes

BASELINE = KernelSet.baseline()
NKI_NORM = KernelSet.from_choices({"norm": "nki_add_rmsnorm"})


def estimator(kernels=BASELINE, dims=REAL, tp=4, **kw):
    return ModelEstimator(shapes(dims, tp), tp, kernels, settings(**kw))


def test_step_structure_matches_the_compile_stage_slot_counts():
    assert dict(LAYER_OPS) == CALLS_PER_LAYER
    assert set(CALLS_PER_MODEL.items()) <= set(CALL_OPS)


@pytest.mark.parametrize("phase, bucket", [(Phase.TOKEN, 128), (Phase.TOKEN, 640), (Phase.CONTEXT, 256)])
@pytest.mark.parametrize("kernels", [BASELINE, NKI_NORM], ids=["baseline", "nki_norm"])
def test_step_is_layers_times_per_layer_plus_all_reduces_plus_per_call_plus_host(phase, bucket, kernels):
    step = estimator(kernels, layers=48).step(phase, bucket)
    per_layer = sum(p.calls * p.time_ns for p in step.parts if p.scope == LAYER and p.source in ("nki", "torch"))
    (all_reduce,) = [p for p in step.parts if p.name == "all_reduce"]
    per_call = sum(p.time_ns for p in step.parts if p.scope == CALL and p.source != "host")
    (host,) = [p for p in step.parts if p.source == "host"]
    assert all_reduce.calls == 2 and all_reduce.scope == LAYER and all_reduce.time_ns > 0
    assert host.time_ns == 1e6
    assert step.total_ns == pytest.approx(48 * (per_layer + 2 * all_reduce.time_ns) + per_call + host.time_ns)
    fewer = estimator(kernels, layers=2).step(phase, bucket)
    assert step.total_ns - fewer.total_ns == pytest.approx(46 * (per_layer + 2 * all_reduce.time_ns))


def test_torch_experts_decode_part_by_hand():
    """8 selected experts x (gate_up 2048 x 384 + down 192 x 2048) bf16 per rank, at 0.725 TB/s (trn2, LNC=2),
    70% efficiency, plus 1 us for each of the aten ops the baseline issues."""
    step = estimator().step(Phase.TOKEN, 128)
    (experts,) = [p for p in step.parts if p.name == "experts"]
    weights = 8 * 3 * 2048 * 192 * 2
    activations = 2 * 2 * 2048 + 8 * (2 + 8)
    assert experts.weight_bytes == weights
    ops = graph_ops("experts", Phase.TOKEN)
    assert ops >= 8 * 2  # at least two matrix products per selected expert
    assert experts.time_ns == pytest.approx((weights + activations) / 725.0 / 0.7 + ops * 1000.0)


def test_context_experts_pay_per_blockwise_block():
    """NxD's blockwise MoE runs one block per 512 token-slots plus E - 1 (kernels.macs): 129 at bucket 128,
    137 at 640, each at the configured 90 us; nothing per aten op."""
    est = estimator()
    times = {b: next(p.time_ns for p in est.step(Phase.CONTEXT, b).parts if p.name == "experts") for b in (128, 640)}
    no_blocks = estimator(block_ns=0.0)
    bare = {b: next(p.time_ns for p in no_blocks.step(Phase.CONTEXT, b).parts if p.name == "experts") for b in (128, 640)}
    assert times[128] - bare[128] == pytest.approx(129 * 9e4)
    assert times[640] - bare[640] == pytest.approx(137 * 9e4)


def test_nki_launches_pay_the_custom_call_cost_and_every_call_the_runtime():
    step = estimator(NKI_NORM, dims=TINY, tp=1).step(Phase.TOKEN, 128)
    free = estimator(NKI_NORM, dims=TINY, tp=1, custom_call_ns=0.0).step(Phase.TOKEN, 128)
    norm, norm_free = ([p for p in s.parts if p.name == "norm" and p.source == "nki"][0] for s in (step, free))
    assert norm.time_ns - norm_free.time_ns == pytest.approx(500.0)  # one launch per norm call
    (runtime,) = [p for p in step.parts if p.name == "runtime"]
    assert (runtime.scope, runtime.calls, runtime.time_ns) == (CALL, 1, 2e6)


def test_nki_part_is_the_cost_model_on_its_trace_traced_once_per_bucket():
    est = estimator(NKI_NORM, dims=TINY, tp=1, layers=48)
    steps = [est.step(Phase.TOKEN, kv) for kv in BUCKETS]
    norms = [p for p in steps[0].parts if p.name == "norm"]
    assert {p.source for p in norms} == {"nki"} and [p.calls for p in norms] == [2, 1]
    variant, params = NKI_NORM.norm.resolve(Phase.TOKEN)
    traces = trace_variant("norm", variant, params, Phase.TOKEN, bucket_shapes(shapes(TINY, 1), Phase.TOKEN, 128),
                           "trn2")
    launches = sum(cost.estimate(t, "trn2", 2).time_ns for t in traces) + len(traces) * 500.0
    assert norms[0].time_ns == pytest.approx(launches)
    assert est.tracer.traced == len(BUCKETS)  # 97 norm calls per step, one trace per KV bucket


@pytest.mark.parametrize("target", ["trn2", "trn3"])
@pytest.mark.parametrize("kernels", [BASELINE, NKI_NORM], ids=["baseline", "nki_norm"])
@pytest.mark.parametrize("optimistic", [False, True], ids=["configured", "no_overheads"])
def test_decode_never_beats_the_weight_bytes_floor(target, kernels, optimistic):
    extremes = dict(torch_op_efficiency=1.0, graph_op_ns=0.0, block_ns=0.0, custom_call_ns=0.0, call_ns=0.0,
                    allreduce_hop_ns=0.0, host_step_ns=0.0)
    est = estimator(kernels, target=target, **(extremes if optimistic else {}))
    for kv in BUCKETS:
        step = est.step(Phase.TOKEN, kv)
        assert step.total_ns >= step.weight_floor_ns > 0


@pytest.mark.parametrize("target, floor_ms", [("trn2", 2.16), ("trn3", 1.28)])
def test_weight_floor_is_the_documented_decode_floor(target, floor_ms):
    """hardware-and-model.md §10.1: 6.27 GB per token at KV bucket 128 over 2.9 / 4.9 TB/s."""
    step = estimator(target=target).step(Phase.TOKEN, 128)
    assert step.weight_floor_ns / 1e6 == pytest.approx(floor_ms, abs=0.01)
    chip_bytes = 4 * step.weight_floor_ns * step.hbm_bytes_per_ns
    assert chip_bytes / 1e9 == pytest.approx(6.27, abs=0.01)


ALL_NKI = KernelSet.from_choices(dict(OmegaConf.load(CONF_DIR / "experiment" / "all_nki.yaml").kernel))


def test_all_nki_context_encoding_is_estimated_from_each_kernel_traced_at_its_bucket():
    """+experiment=all_nki in context encoding: every layer op and the lm_head come from the cost model on
    their prefill traces (none falls back to the roofline), each traced once per bucket at that bucket's
    shapes (a longer bucket costs more), and none beats its own floor."""
    est = estimator(ALL_NKI, dims=TINY, tp=4)
    steps = {b: est.step(Phase.CONTEXT, b) for b in (128, 256)}
    for step in steps.values():
        kernels = {p.name: p for p in step.parts if p.name in (*CALLS_PER_LAYER, "lm_head")}
        assert {n: (p.source, p.variant) for n, p in kernels.items()} == {
            n: ("nki", ALL_NKI.slots[n].resolve(Phase.CONTEXT)[0].name) for n in kernels}
        assert all(p.time_ns >= p.floor_ns > 0 for p in kernels.values())
    assert est.tracer.traced == 2 * len(CALLS_PER_LAYER | CALLS_PER_MODEL)
    time = {b: {p.name: p.time_ns for p in s.parts if p.source == "nki"} for b, s in steps.items()}
    assert all(time[256][n] > time[128][n] for n in ("attention", "experts", "norm"))

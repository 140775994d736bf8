"""The benchmark's decode MoE experts kernel against its torch reference, small and real shapes."""

import os

import pytest
import torch

import nki_cpu
from interp_helpers import max_rel_error

KERNEL = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "kernels", "moe_decode_experts.py")


@pytest.mark.parametrize("experts, hidden, intermediate, top_k", [(8, 512, 64, 2), (128, 2048, 192, 8)],
                         ids=["small", "real"])
def test_moe_decode_experts_matches_reference(experts, hidden, intermediate, top_k):
    kernel = nki_cpu.load_kernel(KERNEL, "moe_decode_experts_kernel")
    reference = nki_cpu.load_kernel(KERNEL, "moe_decode_experts_torch_ref")
    inputs = nki_cpu.load_kernel(KERNEL, "make_moe_inputs")(experts, hidden, intermediate, top_k)
    run = nki_cpu.run_kernel(kernel, *inputs)
    expected = reference(*inputs)
    assert run.outputs.dtype == torch.bfloat16 and run.outputs.shape == (1, hidden)
    # nki-library's moe_tkg tolerance for bf16: 2e-2 relative to max|golden|.
    assert max_rel_error(run.outputs.float().numpy(), expected.float().numpy()) <= 2e-2
    chunks = -(-intermediate // 128)
    assert run.trace.total_macs == top_k * (2 * hidden * intermediate + intermediate * hidden)
    assert run.trace.count_by_op()["nc_matmul"] == top_k * (2 * chunks * hidden // 128 + chunks * hidden // 512)
    gathers = [i for i in run.trace.instructions if i.op == "dma_copy" and any(o.role == "index" for o in i.operands)]
    assert len(gathers) == top_k * (1 + chunks)

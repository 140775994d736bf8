"""The native bf16 matrix products (kernels.cpu) and the routing in kernels.torch_ops."""
import shutil

import pytest
import torch
import torch.nn.functional as F

from kernels import cpu, torch_ops

CAN_BUILD = cpu._cpu_supports_avx2_fma() and bool(shutil.which("cc") or shutil.which("gcc"))
pytestmark = pytest.mark.skipif(not CAN_BUILD, reason="needs a C compiler and an AVX2/FMA CPU")


def test_native_kernels_build_and_load_here():
    assert cpu.available()  # a compile error must fail here, not silently fall back


def reference(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """fp32 accumulation (in float64 here), one rounding to bf16."""
    return F.linear(x.double(), weight.double()).to(torch.bfloat16)


def within_one_ulp(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    ulp = torch.finfo(torch.bfloat16).eps * expected.float().abs().clamp_min(1e-3)
    return bool(((actual.float() - expected.float()).abs() <= ulp).all())


@pytest.mark.parametrize("rows,out,inner", [(1, 1536, 2048), (1, 7, 13), (3, 10, 37), (8, 64, 768), (11, 5, 40),
                                            (32, 33, 64)])
def test_bf16_linear_matches_fp32_accumulation(rows, out, inner):
    g = torch.Generator().manual_seed(rows * out + inner)
    x = torch.randn(rows, inner, generator=g).to(torch.bfloat16)
    w = torch.randn(out, inner, generator=g).to(torch.bfloat16)
    actual = cpu.bf16_linear(x, w)
    assert actual.shape == (rows, out) and actual.dtype == torch.bfloat16
    assert within_one_ulp(actual, reference(x, w))


def test_linear_many_shared_and_per_row_inputs():
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(n, 96, generator=g).to(torch.bfloat16) for n in (5, 64, 3)]
    shared = torch.randn(96, generator=g).to(torch.bfloat16)
    for got, w in zip(cpu.bf16_linear_many(shared, weights), weights):
        assert within_one_ulp(got, reference(shared[None], w)[0])
    per_row = torch.randn(3, 96, generator=g).to(torch.bfloat16)
    for row, got, w in zip(per_row, cpu.bf16_linear_many(per_row, weights), weights):
        assert within_one_ulp(got, reference(row[None], w)[0])


@pytest.mark.parametrize("bf16_hardware", [True, False])
def test_torch_ops_route_by_rows_and_storage(monkeypatch, bf16_hardware):
    monkeypatch.setattr(cpu, "has_bf16_dot_product", lambda: bf16_hardware)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(48, 64, generator=g).to(torch.bfloat16)
    transposed_storage = w.mT.contiguous().mT  # same values, [in, out] storage
    for rows in (1, 8, 40):
        x = torch.randn(rows, 64, generator=g).to(torch.bfloat16)
        expected = reference(x, w)
        assert within_one_ulp(torch_ops.linear(x, w), expected)
        assert within_one_ulp(torch_ops.linear(x, transposed_storage), expected)
    monkeypatch.setattr(cpu, "available", lambda: False)  # no compiler or no AVX2: torch paths
    x = torch.randn(4, 64, generator=g).to(torch.bfloat16)
    assert within_one_ulp(torch_ops.linear(x, w), reference(x, w))
    assert all(within_one_ulp(a, b) for a, b in zip(torch_ops.linear_many(x[0], [w, w]), [reference(x[:1], w)[0]] * 2))

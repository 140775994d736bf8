"""One test per hardware check: the error names the instruction, the limit and the kernel line.

Each kernel below marks its offending line with `# HW:<case>`; the test finds that line in this
file and expects it in the error.
"""

import pytest

import nki.isa as nisa
import nki.language as nl
import nki_cpu
from interp_helpers import line_of

F32 = nl.float32


def sb(shape, dtype=F32):
    return nl.ndarray(shape, dtype=dtype, buffer=nl.sbuf)


def ps(shape, dtype=F32):
    return nl.ndarray(shape, dtype=dtype, buffer=nl.psum)


def k_partition_limit():
    nl.ndarray((129, 4), F32, buffer=nl.sbuf)  # HW:partition_limit


def k_quadrant():
    x = sb((128, 8))
    nisa.tensor_tensor(dst=x[16:48], data1=x[16:48], data2=x[16:48], op=nl.add)  # HW:quadrant


def k_stationary_size():
    nisa.nc_matmul(dst=ps((128, 64)), stationary=sb((128, 256)), moving=sb((128, 64)))  # HW:stationary_size


def k_moving_size():
    nisa.nc_matmul(dst=ps((128, 1024)), stationary=sb((128, 128)), moving=sb((128, 1024)))  # HW:moving_size


def k_contraction():
    nisa.nc_matmul(dst=ps((128, 64)), stationary=sb((128, 128)), moving=sb((64, 64)))  # HW:contraction


def k_one_bank():
    acc = ps((128, 1024))
    nisa.nc_matmul(dst=acc[:, 256:768], stationary=sb((128, 128)), moving=sb((128, 512)))  # HW:one_bank


def k_psum_capacity():
    banks = [ps((128, 512)) for _ in range(8)]
    one_more = nl.ndarray((128, 1), F32, buffer=nl.psum)  # HW:psum_capacity
    for bank in banks + [one_more]:
        nisa.memset(dst=bank, value=0.0)
    for bank in banks:                                     # so every bank is still live at one_more's memset
        nisa.tensor_copy(dst=sb((128, 512)), src=bank)


def k_sbuf_capacity():
    big = sb((128, 40000))
    nisa.memset(dst=big, value=0.0)
    more = nl.ndarray((128, 13300), F32, buffer=nl.sbuf)  # HW:sbuf_capacity
    nisa.tensor_copy(dst=more, src=big[:, 0:13300])


def k_psum_dtype():
    nisa.nc_matmul(dst=ps((64, 64), nl.bfloat16), stationary=sb((64, 64), nl.bfloat16),  # HW:psum_dtype
                   moving=sb((64, 64), nl.bfloat16))


def k_gpsimd_psum():
    nisa.iota(dst=ps((8, 8), nl.int32), pattern=[[1, 8]], offset=0)  # HW:gpsimd_psum


def k_tensor_reads_sbuf():
    nisa.nc_matmul(dst=ps((64, 64)), stationary=ps((64, 64)), moving=sb((64, 64)))  # HW:tensor_reads_sbuf


def k_tensor_writes_psum():
    nisa.nc_matmul(dst=sb((64, 64)), stationary=sb((64, 64)), moving=sb((64, 64)))  # HW:tensor_writes_psum


def k_dma_psum():
    out = nl.ndarray((64, 64), F32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=ps((64, 64)))  # HW:dma_psum


def k_two_psum_inputs():
    nisa.tensor_tensor(dst=sb((64, 64)), data1=ps((64, 64)), data2=ps((64, 64)), op=nl.add)  # HW:two_psum_inputs


def k_matmul_mixed_fp32():
    nisa.nc_matmul(dst=ps((64, 64)), stationary=sb((64, 64)), moving=sb((64, 64), nl.bfloat16))  # HW:matmul_mixed_fp32


def k_matmul_int():
    nisa.nc_matmul(dst=ps((64, 64)), stationary=sb((64, 64), nl.int8), moving=sb((64, 64), nl.int8))  # HW:matmul_int


def k_scalar_operand_fp32():
    nisa.tensor_scalar(dst=sb((64, 8)), data=sb((64, 8)), op0=nl.add, operand0=sb((64, 1), nl.bfloat16))  # HW:scalar_operand_fp32


def k_memset_int_value():
    nisa.memset(dst=sb((8, 8), nl.int32), value=1.5)  # HW:memset_int_value


def k_compute_on_hbm():
    a = nl.ndarray((8, 8), F32, buffer=nl.shared_hbm)
    nisa.tensor_copy(dst=sb((8, 8)), src=a)  # HW:compute_on_hbm


def k_elementwise_shapes():
    nisa.tensor_tensor(dst=sb((64, 8)), data1=sb((64, 8)), data2=sb((32, 16)), op=nl.add)  # HW:elementwise_shapes


def k_vector_transpose():
    nisa.nc_transpose(dst=sb((64, 64)), data=sb((64, 64)), engine=nisa.engine.vector)  # HW:vector_transpose


def k_pe_transpose():
    nisa.nc_transpose(dst=ps((128, 128)), data=sb((128, 256)))  # HW:pe_transpose


def k_bn_stats():
    nisa.bn_stats(dst=sb((8, 6)), data=sb((8, 1024)))  # HW:bn_stats


def k_exponential_trn2():
    nisa.exponential(dst=sb((8, 8)), src=sb((8, 8)))  # HW:exponential_trn2


def k_hwdge_dtypes():
    nisa.dma_copy(dst=sb((8, 8), nl.bfloat16), src=sb((8, 8)), dge_mode=nisa.dge_mode.hwdge)  # HW:hwdge_dtypes


def k_dma_counts():
    nisa.dma_copy(dst=sb((8, 8)), src=sb((8, 4)))  # HW:dma_counts


def k_shuffle_start():
    x = sb((128, 4))
    nisa.nc_stream_shuffle(dst=x[96:128], src=x[0:64], shuffle_mask=list(range(32)))  # HW:shuffle_start


def k_scalar_engine_ops():
    nisa.tensor_scalar(dst=sb((8, 8)), data=sb((8, 8)), op0=nl.subtract, operand0=1.0,  # HW:scalar_engine_ops
                       engine=nisa.scalar_engine)


def k_psum_address():
    nl.ndarray((128, 512), F32, buffer=nl.psum, address=(0, 100))  # HW:psum_address


def k_range_select_false_value():
    x = sb((8, 8))
    nisa.range_select(dst=x, on_true_tile=x, comp_op0=nl.greater, comp_op1=nl.less, bound0=0.0,  # HW:range_select_false_value
                      bound1=4.0, on_false_value=0.0)


def k_max8_size():
    nisa.max8(dst=sb((8, 8)), src=sb((8, 4)))  # HW:max8_size


def k_divide():
    nisa.tensor_tensor(dst=sb((8, 8)), data1=sb((8, 8)), data2=sb((8, 8)), op=nl.divide)  # HW:divide


def k_dma_transpose_dtype():
    nisa.dma_transpose(dst=sb((8, 8), nl.uint8), src=sb((8, 8), nl.uint8))  # HW:dma_transpose_dtype


def k_reduce_axis():
    nisa.tensor_reduce(dst=sb((8, 1)), op=nl.add, data=sb((8, 8)), axis=0)  # HW:reduce_axis


def k_free_dims():
    x = sb((8, 3, 3, 3, 3, 3))
    nisa.tensor_copy(dst=sb((8, 32)), src=x[:, 0:2, 0:2, 0:2, 0:2, 0:2])  # HW:free_dims


CASES = [
    # case, instruction, words of the limit, target
    ("partition_limit", "nl.ndarray", "partition dimension <= 128", "trn2"),
    ("quadrant", "tensor_tensor", "quadrant rule", "trn2"),
    ("stationary_size", "nc_matmul", "stationary free size <= 128", "trn2"),
    ("moving_size", "nc_matmul", "moving free size <= 512", "trn2"),
    ("contraction", "nc_matmul", "same contraction size K", "trn2"),
    ("one_bank", "nc_matmul", "one PSUM bank", "trn2"),
    ("psum_capacity", "nl.ndarray", "PSUM (8 banks x 2 KiB) capacity 16384", "trn2"),
    ("sbuf_capacity", "nl.ndarray", "SBUF capacity 212984", "trn2"),
    ("psum_dtype", "nc_matmul", "must be float32 on trn2", "trn2"),
    ("gpsimd_psum", "iota", "GpSimd cannot access PSUM", "trn2"),
    ("tensor_reads_sbuf", "nc_matmul", "TensorE reads its inputs from SBUF", "trn2"),
    ("tensor_writes_psum", "nc_matmul", "TensorE writes its output to PSUM", "trn2"),
    ("dma_psum", "dma_copy", "DMA cannot access PSUM", "trn2"),
    ("two_psum_inputs", "tensor_tensor", "at most one input may be in PSUM", "trn2"),
    ("matmul_mixed_fp32", "nc_matmul", "fp32/tf32 inputs combine only with fp32/tf32", "trn2"),
    ("matmul_int", "nc_matmul", "TensorE inputs are fp8/bf16/fp16/tf32/fp32", "trn2"),
    ("scalar_operand_fp32", "tensor_scalar", "operand0 tiles must be float32", "trn2"),
    ("memset_int_value", "memset", "integer memset must be an integer", "trn2"),
    ("compute_on_hbm", "tensor_copy", "compute engines cannot access HBM", "trn2"),
    ("elementwise_shapes", "tensor_tensor", "equal partitions and elements per partition", "trn2"),
    ("vector_transpose", "nc_transpose", "vector engine transposes at most [32, 32]", "trn2"),
    ("pe_transpose", "nc_transpose", "tensor engine transposes at most [128, 128]", "trn2"),
    ("bn_stats", "bn_stats", "data free size <= 512", "trn2"),
    ("exponential_trn2", "exponential", "only on trn3", "trn2"),
    ("hwdge_dtypes", "dma_copy", "dge_mode=hwdge moves raw bytes", "trn2"),
    ("dma_counts", "dma_copy", "same number of elements", "trn2"),
    ("shuffle_start", "nc_stream_shuffle", "a 64-partition shuffle starts at partition (0, 64)", "trn2"),
    ("scalar_engine_ops", "tensor_scalar", "ScalarE supports only (multiply, add)", "trn2"),
    ("psum_address", "nl.ndarray", "PSUM tensors start at a 2 KiB bank boundary", "trn2"),
    ("range_select_false_value", "range_select", "on_false_value must be the fp32 minimum", "trn2"),
    ("max8_size", "max8", "src needs 8..16384 elements per partition", "trn2"),
    ("divide", "tensor_tensor", "nl.divide is unsupported on hardware", "trn2"),
    ("dma_transpose_dtype", "dma_transpose", "moves 2- or 4-byte elements", "trn2"),
    ("reduce_axis", "tensor_reduce", "trailing free dims", "trn2"),
    ("free_dims", "tensor_copy", "at most 4 free dims", "trn2"),
]


@pytest.mark.parametrize("case, instruction, limit, target", CASES, ids=[c[0] for c in CASES])
def test_hardware_check_names_instruction_limit_and_line(case, instruction, limit, target):
    kernel = globals()[f"k_{case}"]
    with pytest.raises(nki_cpu.HardwareLimitError) as caught:
        nki_cpu.run_kernel(kernel, target=target)
    error = caught.value
    line = line_of(__file__, f"# HW:{case}")
    assert error.instruction == instruction
    assert limit in error.limit
    assert error.source == (__file__, line)
    message = str(error)
    assert message.startswith(f"{instruction}: ") and limit in message and f"{__file__}:{line}" in message
    assert isinstance(error, nki_cpu.NkiCpuError)


def test_every_check_kernel_has_a_case():
    kernels = {name[2:] for name in globals() if name.startswith("k_")}
    assert kernels == {case[0] for case in CASES}


def trn3_allowances_kernel():
    acc = ps((128, 2048), nl.bfloat16)
    nisa.nc_matmul(dst=acc, stationary=sb((128, 128), nl.bfloat16), moving=sb((128, 2048), nl.bfloat16))
    big = sb((128, 60000))
    nisa.exponential(dst=sb((8, 8)), src=sb((8, 8)))
    nisa.memset(dst=big, value=0.0)


def test_trn3_limits_are_wider():
    run = nki_cpu.run_kernel(trn3_allowances_kernel, target="trn3")
    assert run.trace.target == "trn3"
    assert run.trace.peak_sbuf_bytes == 240000      # the (8, 8) tiles are dead before `big` is first used
    with pytest.raises(nki_cpu.HardwareLimitError):
        nki_cpu.run_kernel(trn3_allowances_kernel, target="trn2")


def test_target_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("NEURON_PLATFORM_TARGET_OVERRIDE", "trn3")
    assert nki_cpu.run_kernel(trn3_allowances_kernel, target=None).trace.target == "trn3"
    monkeypatch.setenv("NEURON_PLATFORM_TARGET_OVERRIDE", "gen3")
    assert nki_cpu.run_kernel(lambda: None, target=None).trace.target == "trn2"


def reuse_psum_banks_kernel():
    for _ in range(20):
        acc = ps((128, 512))
        nisa.memset(dst=acc, value=0.0)


def test_freed_tensors_release_capacity_and_peak_is_reported():
    run = nki_cpu.run_kernel(reuse_psum_banks_kernel)
    assert run.trace.peak_psum_bytes <= 2 * 2048
    assert run.trace.psum_capacity_bytes == 16384 and run.trace.sbuf_capacity_bytes == 212984

"""Launching: jit / simulate / grid, NumPy and torch in and out, in-place inputs, traces, recording."""

import json

import ml_dtypes
import numpy as np
import pytest
import torch

import nki
import nki.isa as nisa
import nki.language as nl
import nki_cpu
from nki_cpu.trace import Trace


@nki.jit
def scale_kernel(a, factor):
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a)
    nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=factor)
    nisa.dma_copy(dst=out, src=t)
    return out


def test_jit_simulate_and_run_kernel_agree(rng):
    a = rng.standard_normal((16, 8)).astype(np.float32)
    direct = scale_kernel(a, 2.0)
    simulated = nki.simulate(scale_kernel)(a, 2.0)
    run = nki_cpu.run_kernel(scale_kernel, a, 2.0)
    for out in (direct, simulated, run.outputs):
        assert isinstance(out, np.ndarray)
        np.testing.assert_array_equal(out, a * 2)
    assert len(run.trace) == 3 and run.trace.kernel == "scale_kernel"


def test_torch_in_torch_out_with_bf16():
    a = torch.linspace(-1, 1, 64, dtype=torch.bfloat16).reshape(8, 8)
    out = scale_kernel(a, 3.0)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16
    torch.testing.assert_close(out, (a.float() * 3).bfloat16(), rtol=0, atol=0)


@nki.jit
def inplace_kernel(a):
    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a)
    nisa.tensor_scalar(dst=t, data=t, op0=nl.add, operand0=1.0)
    nisa.dma_copy(dst=a, src=t)


@pytest.mark.parametrize("make", [
    lambda: np.zeros((4, 4), np.float32),
    lambda: np.zeros((4, 8), np.float32)[:, ::2],          # non-contiguous: copied and written back
    lambda: torch.zeros((4, 4), dtype=torch.bfloat16),
    lambda: torch.zeros((4, 8))[:, 1::2],
])
def test_inputs_written_by_the_kernel_are_updated_in_place(make):
    a = make()
    inplace_kernel(a)
    assert (np.asarray(a.float() if isinstance(a, torch.Tensor) else a) == 1).all()


@nki.jit
def grid_kernel(a):
    out = nl.ndarray((nl.num_programs(0), nl.num_programs(1)), dtype=nl.int32, buffer=nl.shared_hbm)
    t = nl.ndarray((1, 1), dtype=nl.int32, buffer=nl.sbuf)
    value = nl.program_id(0) * 10 + nl.program_id(1) + nl.program_ndim() * 100
    nisa.memset(dst=t, value=value)
    nisa.dma_copy(dst=out[nl.program_id(0):nl.program_id(0) + 1, nl.program_id(1):nl.program_id(1) + 1], src=t)
    return out


def test_grid_launch_shares_shared_hbm_outputs():
    out = grid_kernel[2, 3](np.zeros(1, np.float32))
    np.testing.assert_array_equal(out, [[200, 201, 202], [210, 211, 212]])
    run = nki_cpu.run_kernel(grid_kernel[2, 3], np.zeros(1, np.float32))
    assert run.trace.grid == (2, 3)
    assert sorted({i.program_id for i in run.trace.instructions}) == [(p, q) for p in range(2) for q in range(3)]
    assert nki.simulate(grid_kernel[2, 3])(np.zeros(1, np.float32)).shape == (2, 3)


@nki.jit
def sbuf_output_kernel(a):
    return nl.ndarray((4, 4), dtype=nl.float32, buffer=nl.sbuf)


def test_outputs_must_be_hbm():
    with pytest.raises(nki_cpu.NkiUsageError, match="HBM"):
        sbuf_output_kernel(np.zeros(1, np.float32))


def test_recording_collects_traces_and_json_round_trips(rng):
    a = rng.standard_normal((8, 8)).astype(np.float32)
    with nki_cpu.recording() as traces:
        scale_kernel(a, 1.0)
        grid_kernel[2, 1](a)
    assert [t.kernel for t in traces] == ["scale_kernel", "grid_kernel"]
    trace = traces[0]
    again = Trace.from_json(trace.to_json())
    assert again.instructions == trace.instructions
    assert again.summary() == trace.summary()
    assert json.loads(trace.to_json())["version"] == 1
    assert trace.count_by_engine() == {"dma": 2, "vector": 1}
    assert trace.total_dma_bytes == 2 * 8 * 8 * 4
    first = trace.instructions[0]
    assert first.writes[0].buffer == "sbuf" and first.reads[0].buffer == "hbm"
    assert first.source[0] == __file__


def test_name_and_engine_arguments_are_recorded():
    @nki.jit
    def kernel(a):
        t = nl.ndarray((4, 4), dtype=nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=t, value=0.0, engine=nisa.engine.gpsimd, name="zero")
        out = nl.ndarray((4, 4), dtype=nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=t, dge_mode=nisa.dge_mode.hwdge, name="store")
        return out

    trace = nki_cpu.run_kernel(kernel, np.zeros(1, np.float32)).trace
    memset, store = trace.instructions
    assert memset.engine == "gpsimd" and memset.attrs["name"] == "zero"
    assert memset.attrs["engine_requested"] == "gpsimd"
    assert store.attrs["dge_mode"] == "hwdge" and store.attrs["name"] == "store"


def test_load_kernel_from_a_file_path(tmp_path):
    path = tmp_path / "my_kernel.py"
    path.write_text(
        "import nki\nimport nki.isa as nisa\nimport nki.language as nl\n\n"
        "@nki.jit\ndef double(a):\n"
        "    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)\n"
        "    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)\n"
        "    nisa.dma_copy(dst=t, src=a)\n"
        "    nisa.tensor_tensor(dst=t, data1=t, data2=t, op=nl.add)\n"
        "    nisa.dma_copy(dst=out, src=t)\n"
        "    return out\n")
    double = nki_cpu.load_kernel(path, "double")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(double(a), 2 * a)
    with pytest.raises(AttributeError, match="triple"):
        nki_cpu.load_kernel(path, "triple")


def test_load_kernel_from_a_package_with_relative_imports(tmp_path):
    package = tmp_path / "checkout" / "src" / "mylib_pkg" / "ops"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("SCALE = 3.0\n")
    (package / "scale.py").write_text(
        "import nki.isa as nisa\nimport nki.language as nl\nfrom .helpers import SCALE\n\n"
        "def scale(a):\n"
        "    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)\n"
        "    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)\n"
        "    nisa.dma_copy(dst=t, src=a)\n"
        "    nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=SCALE)\n"
        "    nisa.dma_copy(dst=out, src=t)\n"
        "    return out\n")
    scale = nki_cpu.load_kernel(package / "scale.py", "scale")
    assert scale.__module__ == "mylib_pkg.ops.scale"
    a = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(nki_cpu.run_kernel(scale, a).outputs, 3 * a)


def test_unsupported_apis_raise_not_implemented_naming_the_api():
    with pytest.raises(NotImplementedError, match="nisa.quantize_mx"):
        nisa.quantize_mx(None, None, None)
    with pytest.raises(NotImplementedError, match="nl.gather_flattened"):
        nl.gather_flattened(None, None)


def test_nl_convenience_layer(rng):
    @nki.jit
    def kernel(a, b):
        x, y = nl.load(a), nl.load(b)
        s = nl.add(x, y)
        e = nl.exp(s)
        m = nl.max(e, axis=1)
        p = nl.matmul(x, y, transpose_x=True)
        sm = nl.softmax(s, axis=-1)
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        nl.store(out, sm)
        mm = nl.ndarray(p.shape, dtype=nl.float32, buffer=nl.shared_hbm)
        nl.store(mm, nl.copy(p))
        mx = nl.ndarray(m.shape, dtype=nl.float32, buffer=nl.shared_hbm)
        nl.store(mx, m)
        return out, mm, mx

    a = rng.standard_normal((16, 16)).astype(np.float32)
    b = rng.standard_normal((16, 16)).astype(np.float32)
    softmax, product, row_max = kernel(a, b)
    s = a + b
    np.testing.assert_allclose(softmax, np.exp(s) / np.exp(s).sum(axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(product, a.T @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(row_max[:, 0], np.exp(s).max(axis=1), rtol=1e-6)


def test_tile_size_and_nc_version_follow_the_target():
    @nki.jit
    def kernel():
        return nl.tile_size.total_available_sbuf_size, nisa.get_nc_version(), nl.tile_size.gemm_moving_fmax

    assert nki_cpu.run_kernel(kernel, target="trn2").outputs == (212984, nisa.nc_version.gen3, 512)
    assert nki_cpu.run_kernel(kernel, target="trn3").outputs == (245752, nisa.nc_version.gen4, 512)
    assert ml_dtypes.bfloat16 == nl.bfloat16 and str(nl.float32) == "float32"
    assert np.zeros(2, dtype=nl.bfloat16).dtype == ml_dtypes.bfloat16


def test_a_jit_kernel_called_from_a_kernel_runs_inline(rng):
    @nki.jit
    def outer(a):
        return scale_kernel(a, 4.0)

    a = rng.standard_normal((4, 4)).astype(np.float32)
    run = nki_cpu.run_kernel(outer, a)
    np.testing.assert_array_equal(run.outputs, 4 * a)
    assert run.trace.kernel == "outer" and len(run.trace) == 3


@nki.jit
def handoff_kernel(a, reverse):
    """Instance `sender` writes a * 10 to shared HBM, the other one reads it after a barrier."""
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    scratch = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    sender = 1 if reverse else 0
    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    if nl.program_id(0) == sender:
        nisa.dma_copy(dst=t, src=a)
        nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=10.0)
        nisa.dma_copy(dst=scratch, src=t)
    nisa.core_barrier(scratch, (0, 1))
    if nl.program_id(0) != sender:
        nisa.dma_copy(dst=t, src=scratch)
        nisa.dma_copy(dst=out, src=t)
    return out


def test_core_barrier_hands_data_from_an_earlier_instance_to_a_later_one():
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    run = nki_cpu.run_kernel(handoff_kernel[2], a, False)
    np.testing.assert_array_equal(run.outputs, a * 10)
    assert {i.op for i in run.trace.instructions} == {"dma_copy", "tensor_scalar"}  # barriers are not traced
    np.testing.assert_array_equal(handoff_kernel(a, False), np.full_like(a, np.nan))  # no grid: no reader


def test_core_barrier_holds_an_earlier_instance_until_a_later_one_has_written():
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(handoff_kernel[2](a, True), a * 10)  # instance 0 reads what instance 1 wrote


@nki.jit
def unbalanced_barrier_kernel(a):
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    if nl.program_id(0) == 0:
        nisa.core_barrier(out, (0, 1))
    return out


@nki.jit
def subset_barrier_kernel(a):
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    nisa.core_barrier(out, (0, 1))
    return out


def test_core_barrier_usage_errors():
    a = np.ones((2, 4), np.float32)
    with pytest.raises(nki_cpu.NkiUsageError, match="must reach the same rendezvous"):
        unbalanced_barrier_kernel[2](a)
    with pytest.raises(NotImplementedError, match="subset"):
        subset_barrier_kernel[3](a)
    subset_barrier_kernel(a)  # one instance: nothing to wait for

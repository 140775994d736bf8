"""nki_cpu: a CPU interpreter of the NKI "Beta 2" API (NKI 0.2/0.3, Neuron SDK 2.27-2.29).

Unmodified kernels (`import nki`, `import nki.language as nl`, `import nki.isa as nisa`) run
eagerly on NumPy with the hardware's numerics and limits, and every instruction is recorded in a
`Trace` (see `nki_cpu.trace` for the contract).

    import nki_cpu
    nki_cpu.install()                      # `import nki` -> this interpreter (unless a genuine NKI exists)
    out = my_kernel(x_np, w_np)            # @nki.jit kernels take NumPy arrays or CPU torch tensors
    run = nki_cpu.run_kernel(my_kernel, x, w, target="trn3")   # run.outputs, run.trace
    with nki_cpu.recording() as traces: ...                    # traces of every launch inside

Module map: dtypes (types, rounding), tensor (NkiTensor views, access patterns), memory (buffers,
allocations, capacity), targets (per-target limits), checks (kernel source lines, failing),
errors, ops (ALU operators, activation functions), context (the running launch), runtime (jit,
simulate, grid, run_kernel, recording), replay (record once, replay later), gang (grid instances meeting at sendrecv), language /
language_ops (nl), isa/ (nisa by family), install / facade / kernel_typing / compiler (the `nki`
package shim), legacy (`neuronxcc.nki`), loader (kernel files), trace (the trace contract).

Numerics: operands are read as fp32, computed in fp32 and rounded once to dst.dtype (round to
nearest even; bf16/fp8 via ml_dtypes; float -> int rounds to nearest even, NaN -> 0, saturates);
bitvec operators are exact on integers; arithmetic on all-int32 operands is exact. Matmuls
accumulate in fp32 in PSUM (bf16 PSUM on trn3) with the accumulate=None first-write rule tracked
per PSUM element. Fresh tensors hold NaN (ints: 4). ScalarE and VectorE keep separate accumulator
registers. Activation functions are exact NumPy formulas (erf via a 1.5e-7 approximation), not
the hardware's polynomials.

NOT covered (calling these raises NotImplementedError naming the API, or is documented here):
- nisa: nc_matmul_mx, quantize_mx, nonzero_with_count, sequence_bounds,
  dropout and RNG (rng, rand2, set_rng_seed, rand_set_state, rand_get_state),
  tensor_copy_dynamic_src/dst, activate2 and topk (0.4+/0.6), core_barrier over a subset of the
  program instances; nki.collectives.
- nl: gather_flattened, random_seed, dropout, ceil/floor/trunc, nl.matmul(transpose_x=False)
  (as on NKI 0.3/0.4; `neuronxcc.nki` computes it), softmax over a non-last axis,
  nl.fori_loop/while_loop (0.6).
- NkiTensor 0.5+ view methods (slice, select, permute, broadcast, rearrange, indirect, ...);
  indexing with a tensor (use .ap(scalar_offset=...)); vector_offset outside DMA instructions.
- Packed MX dtypes (float8_*_x4, float4_e2m1fn_x4) are moved bit-exactly but never computed on.
- Scheduling: kernel.with_schedule(...) and nl.no_reorder() are accepted and ignored; instructions
  return None, so NkiInstruction handles (.depends_on) do not exist; name= is recorded in the trace.
- Beta 1 (`neuronxcc.nki`) only as far as public calibration kernels use it: install() makes
  `neuronxcc.nki`, `.language`, `.isa`, `.typing`, `.compiler` resolve here (unless a real neuronxcc
  is importable); nl.load/nl.store, value-returning nl.matmul (transpose_x=False transposes on
  TensorE), nl.par_dim as a leading partition dim, ncc.sbuf/psum alloc helpers (placement ignored)
  work. Not: block dims before the partition dim, value-returning nisa instructions,
  nl.arange/mgrid, mask=, tile `+=`, nki.simulate_kernel/benchmark/baremetal.
- Hardware rules not checked: DMA descriptor/queue limits, VectorE/ScalarE 64K (SBUF) / 4K (PSUM)
  free sizes, alignment of address= offsets other than PSUM banks, fp8 double_row tiling limits,
  engine-specific dtype restrictions beyond those listed in the instruction modules.
- Program instances of a grid run one at a time (gang): each until its end or a nisa.sendrecv, where
  all meet and exchange SBUF tiles (nki_cpu.gang). shared_hbm tensors are shared between instances
  by allocation order, private_hbm/hbm tensors and SBUF/PSUM are per instance.
- nl.ndarray(address=...) is honoured for capacity checks only: tensors never alias.
- Runs are single-threaded and not thread-safe (one launch stack per process).
- Hardware cycle costs are not modelled here (the trace feeds a separate cost model).
"""

from __future__ import annotations

from .errors import HardwareLimitError, NkiCpuError, NkiIndexError, NkiUnsupportedError, NkiUsageError
from .install import InstallResult, install, uninstall
from .loader import load_kernel
from .runtime import JitKernel, KernelRun, jit, recording, run_kernel, simulate
from .targets import TARGETS, Target, resolve_target
from .trace import Instruction, Operand, Region, Trace

__all__ = [
    "HardwareLimitError", "NkiCpuError", "NkiIndexError", "NkiUnsupportedError", "NkiUsageError",
    "InstallResult", "install", "uninstall", "load_kernel", "JitKernel", "KernelRun", "jit", "recording",
    "run_kernel", "simulate", "TARGETS", "Target", "resolve_target", "Instruction", "Operand", "Region", "Trace",
]

"""Trainium hardware constants of the cost model, one record per target (trn2, trn3).

Every number carries its source. Keys (see ../shared/reference/nki-api.md §0 and
hardware-and-model.md §0; SDK = aws-neuron/aws-neuron-sdk@81ce03ae):
  ARCH2  SDK:nki/guides/architecture/trainium_inferentia2_arch.rst (NeuronCore-v2, common rules)
  ARCH3  SDK:nki/guides/architecture/trainium2_arch.rst (NeuronCore-v3 = Trn2)
  ARCH4  SDK:nki/guides/architecture/trainium3_arch.rst (NeuronCore-v4 = Trn3)
  ISA-B1 "Estimated instruction cost" sections of the Beta 1 nki.isa docstrings (SDK 2.26),
         tabulated in nki-api.md §13 (written for NC-v2; the only official per-instruction formulas)
  PERF   SDK:nki/deep-dives/nki_perf_guide.rst
  DMA-OV SDK:nki/get-started/about/nki-dma-overview.rst
  DMA-BW SDK:nki/deep-dives/nki-dma-bandwidth-guide.rst
  HW2/HW3 SDK:about-neuron/arch/neuron-hardware/{trainium2,trainium3}.rst
  LNC    SDK:about-neuron/arch/neuron-features/logical-neuroncore-config.rst
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dtypes import ALL_DTYPES
from ..targets import resolve_target

# Trace dtype names that engines treat as 16-bit floats (the performance-mode condition, ARCH3).
SIXTEEN_BIT_FLOATS = frozenset({"bfloat16", "float16"})
_ITEMSIZE = {name: dtype.itemsize for name, dtype in ALL_DTYPES.items()}


@dataclass(frozen=True)
class Hardware:
    """One NeuronCore generation as seen by the cost model (times in ns, rates in bytes/ns)."""

    name: str
    # Engine clocks in GHz: ARCH3 / ARCH4 "Compute Engine Specifications" tables.
    tensor_ghz: float
    vector_ghz: float
    scalar_ghz: float
    gpsimd_ghz: float
    # Streaming rate of one DMA engine with large contiguous payloads, bytes/ns: the DMA-BW / DMA-OV
    # table (Trn2 23 B/ns, Trn3 33 B/ns). DMA-OV's profile confirms it on Trn2: one engine moved a
    # contiguous 32 KiB (one transfer) HBM -> SBUF in 1416 ns = 23.1 B/ns. (The same page's prose gives
    # a "theoretical" 27.2 / 38.4 B/ns; the table is the achieved rate and is what we stream at.)
    dma_bytes_per_ns: float
    # Chip HBM bandwidth, bytes/ns. [CONFLICT] Trn2 2.9 TB/s (HW2) vs 3 TB/s (ARCH3); Trn3 4.9 TB/s (HW3)
    # vs 4.7 TB/s (ARCH4). We take the chip pages HW2/HW3, as hardware-and-model.md §1/§10 does for the
    # team's decode floors, so our floors match those numbers.
    hbm_chip_bytes_per_ns: float
    # ScalarE speed-up for bf16/fp16 tensor_scalar / tensor_copy: ARCH4 "up to 2x" on Trn3; none on Trn2.
    scalar_copy_speedup: float
    # VectorE nisa.exponential vs ScalarE exp: "4x the throughput" (ARCH4); the instruction is Trn3-only.
    exponential_speedup: float
    # DMA read-add-write (dma_compute) into SBUF at full copy rate on NC-v4 (ARCH4); 50% before.
    dma_compute_sbuf_full_rate: bool
    # Fastest low-precision TensorE mode relative to BF16, for roofline plots: Trn2 FP8 double-row 2x
    # (ARCH3: 158 vs 79 TFLOPS), Trn3 MXFP8/MXFP4 4x (ARCH4: 315 vs 79 TFLOPS).
    low_precision_name: str
    low_precision_speedup: float

    # --- shared by trn2 and trn3 ---
    # TensorE is a 128 x 128 systolic array (ARCH2); 2 FLOP per MAC.
    pe_rows: int = 128
    pe_cols: int = 128
    # ISA-B1 nc_matmul: max(min(64, N_stationary), N_moving) cycles; 64 = MM_INIT_LATENCY (ARCH2).
    matmul_min_cycles: int = 64
    # ISA-B1: fp32 matmul inputs are 4x slower (ARCH3: 20 vs 79 TFLOPS).
    fp32_matmul_slowdown: float = 4.0
    # ARCH3: "transpose mode doubles FP32 transpose speed", so an fp32 PE transpose is 2x, not 4x.
    fp32_transpose_slowdown: float = 2.0
    # ISA-B1: MIN_II ~ 64 engine cycles, "minimum instruction initiation interval for small input tiles".
    min_ii_cycles: int = 64
    # Latency from an instruction's issue slot ending to its result being visible to dependants, in
    # cycles of its engine. [CONFLICT] ARCH2 says to add a "static instruction overhead of 100 engine
    # cycles" for small or dependent instructions; PERF Opt #5a measured dependent 1-element ScalarE
    # instructions issuing every ~189 ns = 264 cycles at 1.4 GHz (NC-v2) = MIN_II 64 + 200. We take the
    # measurement: 200 cycles, so a dependent chain of tiny instructions reproduces it.
    fixed_overhead_cycles: int = 200
    # ISA-B1 iota / affine_select / local_gather: GPSIMD_START ~ 150 cycles.
    gpsimd_start_cycles: int = 150
    # ARCH2: an innermost free stride above 16 bytes halves SBUF/PSUM interface bandwidth.
    sbuf_stride_limit_bytes: int = 16
    sbuf_stride_slowdown: float = 2.0
    # ARCH3 VectorE performance mode for bf16/fp16: tensor_copy/tensor_scalar 4x when both sides are
    # in SBUF with a contiguous innermost dim, 2x otherwise (non-contiguous, or one side in PSUM);
    # tensor_tensor 2x when both inputs are in SBUF. ARCH4 refers to the same VectorE mode on Trn3
    # (assumed unchanged there).
    vector_copy_speedup_contiguous: float = 4.0
    # ARCH3 / ARCH4 compute-engine tables: VectorE moves "512/cycle BF16/FP16, 256 other" on 128 lanes,
    # i.e. 2 non-16-bit elements per lane and cycle where NC-v2 (and the ISA-B1 formulas) moved 1.
    vector_wide_elems: float = 2.0
    vector_copy_speedup_other: float = 2.0
    vector_tensor_tensor_speedup: float = 2.0
    # DMA-OV: 16 DMA engines per NeuronCore; a 128-partition SBUF transfer gives 8 partitions to each.
    dma_engines: int = 16
    partitions_per_dma_engine: int = 8
    # DMA-BW: "descriptor setup, synchronization, and semaphore-to-start latency (~1300 ns cross-engine)".
    dma_fixed_latency_ns: float = 1300.0
    # Cost of one descriptor (one contiguous run of memory) on a DMA engine, on top of its bytes.
    # FITTED by `make calibrate` (src/nki_cpu/cost/calibration.py) to the ten kernel points of
    # calibration/points.yaml (nine nki-autotune Trn2 matmuls moving 256 B - 2 KiB runs, the SDK's
    # DMA-overview transfer): 32 ns, leave-one-out 24-32 ns. DMA-BW's saturation curve bounds it
    # ("<256 B per partition severely overhead-bound", ">=2 KiB approaches peak": 2 KiB runs reach 2048 /
    # (32 + 89) = 17 B/ns = 73% of 23). No Trn3 point exists: the same time is assumed there.
    dma_descriptor_ns: float = 32.0
    # ARCH3: DMA transpose reaches up to 90% of DMA copy throughput from HBM, 50% SBUF -> SBUF.
    dma_transpose_hbm_factor: float = 0.9
    dma_transpose_sbuf_factor: float = 0.5
    # nki-api.md §10.2: dma_compute runs at ~50% DMA throughput before NC-v4 (and to HBM on v4).
    dma_compute_factor: float = 0.5
    # HW2 / HW3: 8 physical NeuronCores per chip; LNC: at LNC=2 two of them form one logical core and
    # share one HBM bank (hardware-and-model.md §2: ~0.725 TB/s per logical core on Trn2).
    physical_cores_per_chip: int = 8

    def clock_ghz(self, engine: str) -> float:
        return {"tensor": self.tensor_ghz, "vector": self.vector_ghz, "scalar": self.scalar_ghz,
                "gpsimd": self.gpsimd_ghz}[engine]

    def hbm_bytes_per_ns(self, lnc: int) -> float:
        """HBM bandwidth of one logical core: the chip's bandwidth shared by its 8 / lnc logical cores."""
        return self.hbm_chip_bytes_per_ns * lnc / self.physical_cores_per_chip

    def pe_macs_per_ns(self, dtype: str = "bfloat16", double_row: bool = False) -> float:
        """Peak multiply-accumulates per ns of one physical core's TensorE for an input dtype:
        bf16/fp16/tf32/fp8 at 128 x 128 per cycle, fp32 4x slower, fp8 double_row 2x (ARCH3)."""
        macs = self.pe_rows * self.pe_cols * self.tensor_ghz
        if dtype == "float32":
            return macs / self.fp32_matmul_slowdown
        return macs * 2 if double_row else macs

    def peak_flops_per_ns(self, lnc: int, dtype: str = "bfloat16", double_row: bool = False) -> float:
        """TensorE peak of one logical core (lnc physical cores): 78.6 TFLOPS bf16 per physical core."""
        return 2 * self.pe_macs_per_ns(dtype, double_row) * lnc


HARDWARE: dict[str, Hardware] = {
    "trn2": Hardware(
        name="trn2", tensor_ghz=2.4, vector_ghz=0.96, scalar_ghz=1.2, gpsimd_ghz=1.2,
        dma_bytes_per_ns=23.0, hbm_chip_bytes_per_ns=2900.0,
        scalar_copy_speedup=1.0, exponential_speedup=4.0, dma_compute_sbuf_full_rate=False,
        low_precision_name="FP8 double-row", low_precision_speedup=2.0,
    ),
    "trn3": Hardware(
        name="trn3", tensor_ghz=2.4, vector_ghz=1.2, scalar_ghz=1.2, gpsimd_ghz=1.2,
        dma_bytes_per_ns=33.0, hbm_chip_bytes_per_ns=4900.0,
        scalar_copy_speedup=2.0, exponential_speedup=4.0, dma_compute_sbuf_full_rate=True,
        low_precision_name="MXFP8/MXFP4", low_precision_speedup=4.0,
    ),
}

SUPPORTED_LNC = (1, 2)   # LNC: only LNC=1 and LNC=2 exist; LNC=2 is the default


def itemsize(dtype: str) -> int:
    """Bytes per element of a trace dtype name."""
    return _ITEMSIZE[dtype]


def hardware(target: str) -> Hardware:
    """Constants for a target name or alias (gen3 -> trn2, gen4 -> trn3)."""
    name = resolve_target(target).name
    if name not in HARDWARE:
        raise ValueError(f"the cost model has constants for {sorted(HARDWARE)} only, not {name!r}")
    return HARDWARE[name]

"""Per-target hardware limits.

Each constant carries the document it comes from. Keys used below:
  ARCH2/ARCH3/ARCH4 = aws-neuron-sdk nki/guides/architecture/{trainium_inferentia2_arch,
  trainium2_arch, trainium3_arch}.rst; KLR = leanprover/KLR KLR/Trace.lean l.40-54
  (nl.tile_size values); ISA = aws-neuron-sdk nki/api/nki/isa/__init__.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV_TARGET = "NEURON_PLATFORM_TARGET_OVERRIDE"
DEFAULT_TARGET = "trn2"


@dataclass(frozen=True)
class Target:
    name: str                       # canonical name: "trn1", "trn2", "trn3"
    nc_version: int                 # NeuronCore generation: 2, 3, 4
    pmax: int = 128                 # partitions (ARCH2, KLR)
    # Usable SBUF bytes per partition: nl.tile_size.total_available_sbuf_size (KLR).
    sbuf_bytes_per_partition: int = 212984
    # PSUM: 16 KiB per partition = 8 banks x 2 KiB (ARCH2; nkipy HardwareConstants.h).
    psum_bank_bytes: int = 2048
    psum_banks: int = 8
    psum_fmax: int = 512            # fp32 elements per PSUM bank (KLR)
    gemm_stationary_fmax: int = 128  # stationary free size (KLR)
    gemm_moving_fmax: int = 512      # moving free size (KLR; ARCH2)
    # Largest matmul moving free size per dst dtype bits (ARCH4: up to 4096 fp32 / 8192 bf16).
    matmul_moving_max_fp32: int = 512
    matmul_moving_max_bf16: int = 512
    matmul_output_spans_banks: bool = False   # ARCH4: one matmul may span all 8 banks on v4
    matmul_bf16_psum: bool = False            # ARCH4: bf16 PSUM matmul output from v4
    matmul_transpose: bool = True             # ARCH3: is_transpose from v3
    bn_stats_fmax: int = 512                  # KLR
    vector_transpose_max: int = 32            # ISA nc_transpose: VectorE <= [32, 32]
    has_exponential: bool = False             # ISA nisa.exponential: v4 only
    has_range_select: bool = True             # ISA nisa.range_select: v3+
    scalar_engine_copy: bool = True           # ISA tensor_copy: ScalarE from v3

    @property
    def psum_bytes_per_partition(self) -> int:
        return self.psum_bank_bytes * self.psum_banks


TARGETS: dict[str, Target] = {
    "trn1": Target(
        name="trn1", nc_version=2, sbuf_bytes_per_partition=180224,
        matmul_transpose=False, has_range_select=False, scalar_engine_copy=False,
    ),
    "trn2": Target(name="trn2", nc_version=3, sbuf_bytes_per_partition=212984),
    "trn3": Target(
        name="trn3", nc_version=4, sbuf_bytes_per_partition=245752,
        matmul_moving_max_fp32=4096, matmul_moving_max_bf16=8192,
        matmul_output_spans_banks=True, matmul_bf16_psum=True, has_exponential=True,
    ),
}

# Spellings accepted by NEURON_PLATFORM_TARGET_OVERRIDE (nki/__init__.py docstring).
ALIASES = {"inf2": "trn1", "gen2": "trn1", "gen3": "trn2", "gen4": "trn3"}


def resolve_target(name: str | Target | None = None) -> Target:
    """Explicit name wins, then the environment variable, then trn2."""
    if isinstance(name, Target):
        return name
    chosen = name or os.environ.get(ENV_TARGET) or DEFAULT_TARGET
    key = ALIASES.get(chosen.lower(), chosen.lower())
    if key not in TARGETS:
        raise ValueError(f"unknown NKI target {chosen!r}; expected one of {sorted(TARGETS) + sorted(ALIASES)}")
    return TARGETS[key]

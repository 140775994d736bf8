"""The context-encoding expert pair (kernels.experts.blockwise_kernel): its block table, tiling checks and launch.

The block table groups the (token, slot) assignments by expert, ascending, in blocks of `block_size` slots,
as NxD's blockwise MoE builds `token_position_to_id` and `block_to_expert` in the graph before its kernel:
only chosen experts get blocks (ceil(tokens of the expert / block_size) each) and padding tokens (a prompt
shorter than its bucket) get no slot, so they pull in no expert. Here the table holds only the blocks in use;
a compiled graph would size it to the bound of kernels.macs.expert_blocks and skip the empty blocks.

Shape checks run at config time, so this module imports no NKI.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.experts.nki_tiling import MAX_STATIONARY, PARTITIONS, PSUM_BANK_BYTES, SBUF_BYTES, equal_chunk
from kernels.nki_support import nki_module
from kernels.types import ExpertWeights

KERNELS = "kernels.experts.blockwise_kernel"
OUT_TILE = 512  # the down projection's moving width: fp32 columns of one PSUM bank
PSUM_BYTES = 8 * PSUM_BANK_BYTES


@dataclass(frozen=True)
class BlockTable:
    token_ids: torch.Tensor  # [N, B] int32, -1 in an empty slot
    experts: torch.Tensor  # [1, N] int32, ascending
    affinities: torch.Tensor  # [N, B] the slot's affinity (0 in an empty slot)


def block_table(affinities: torch.Tensor, index: torch.Tensor, block_size: int,
                valid: torch.Tensor | None = None) -> BlockTable:
    """The blocks of the assignments of `index` [T, k] (of the tokens `valid` [T] marks, default all)."""
    tokens, top_k = index.shape
    token = torch.arange(tokens).repeat_interleave(top_k)
    expert, affinity = index.flatten(), affinities.flatten()
    if valid is not None:
        keep = valid.repeat_interleave(top_k)
        token, expert, affinity = token[keep], expert[keep], affinity[keep]
    order = torch.argsort(expert, stable=True)  # by expert, tokens ascending within one
    token, expert, affinity = token[order], expert[order], affinity[order]
    used, counts = torch.unique_consecutive(expert, return_counts=True)
    per_expert = -(-counts // block_size)
    first_block = torch.cumsum(per_expert, 0) - per_expert
    group_start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(expert)) - group_start.repeat_interleave(counts)
    block = first_block.repeat_interleave(counts) + rank // block_size
    slot = rank % block_size
    blocks = int(per_expert.sum())
    token_ids = torch.full((blocks, block_size), -1, dtype=torch.int32)
    slot_affinities = torch.zeros((blocks, block_size), dtype=affinities.dtype)
    token_ids[block, slot] = token.to(torch.int32)
    slot_affinities[block, slot] = affinity
    return BlockTable(token_ids, used.repeat_interleave(per_expert).to(torch.int32).unsqueeze(0), slot_affinities)


def i_chunk(intermediate: int) -> int | None:
    """Intermediate rows per chunk: the fewest equal chunks of at most 128 (a stationary's width)."""
    return equal_chunk(intermediate, MAX_STATIONARY)


def problems(hidden: int, intermediate: int, block_size: int, dtype_bytes: int, cores: int) -> list[str]:
    """Why the pair cannot serve these per-rank sizes (empty when it can)."""
    found = []
    if hidden % (cores * PARTITIONS):
        found.append(f"hidden size {hidden} does not split into {cores} cores' shares of whole {PARTITIONS}-column "
                     f"tiles")
    if not (1 <= block_size <= PARTITIONS and block_size & (block_size - 1) == 0):
        found.append(f"block_size={block_size} must be a power of two in 1..{PARTITIONS} (a block's tokens sit on "
                     f"partitions)")
    if hidden % PARTITIONS:
        found.append(f"hidden size {hidden} is not a multiple of {PARTITIONS} partitions")
    elif hidden // cores > OUT_TILE and hidden // cores % OUT_TILE:
        found.append(f"a core's {hidden // cores} hidden columns are not a multiple of the {OUT_TILE}-column "
                      f"output tile")
    chunk = i_chunk(intermediate)
    if chunk is None:
        found.append(f"intermediate size per rank {intermediate} does not split into equal chunks of at most "
                     f"{MAX_STATIONARY} rows")
    if found:
        return found
    chunks, k_tiles = intermediate // chunk, hidden // PARTITIONS
    gate_up_psum = -(-4 * 2 * intermediate // PSUM_BANK_BYTES) * PSUM_BANK_BYTES  # [B, 2I] fp32, whole banks
    if gate_up_psum > PSUM_BYTES - PSUM_BANK_BYTES:
        found.append(f"gate/up partial sums need {gate_up_psum} bytes per partition of PSUM, more than "
                     f"{PSUM_BYTES - PSUM_BANK_BYTES} (one bank stays for the transposes)")
    d = dtype_bytes
    kernel1 = 2 * (k_tiles * 2 * intermediate * d + hidden * d + k_tiles * block_size * d
                   + 2 * intermediate * 4 + 2 * intermediate * 4 + chunks * block_size * d)
    kernel2 = 2 * (chunks * hidden * d + chunks * block_size * d + hidden * d) // cores + hidden * (d + 4)
    for name, used in (("gate/up + SwiGLU", kernel1), ("down + scatter", kernel2)):
        if used > SBUF_BYTES:
            found.append(f"{name} kernel: about {used} bytes per partition of SBUF needed, {SBUF_BYTES} on trn2")
    return found


def run_pair(x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, weights: ExpertWeights,
             valid: torch.Tensor | None, block_size: int, cores: int, fp32_swiglu: bool, fp32_affinity: bool,
             launch) -> torch.Tensor:
    """The pair on x [T, H]: this rank's partial MoE output [T, H], zero in padding rows."""
    kernels = nki_module(KERNELS)
    table = block_table(affinities, index, block_size, valid)
    if table.token_ids.shape[0] == 0:  # every token is padding
        return torch.zeros_like(x)
    chunk = i_chunk(weights.down.shape[1])
    h = launch(kernels.gate_up_swiglu[cores], x, table.token_ids, table.experts, weights.gate_up, chunk, fp32_swiglu)
    return launch(kernels.down_expert_scatter[cores], h, table.token_ids, table.experts, table.affinities, weights.down,
                  x.shape[0], chunk, fp32_affinity)

"""What the decode expert kernels are launched with, shared by their CPU launchers (kernels.experts.selective_v1,
grouped_v2) and their device slots (model.neuron.layer_slots), so the interpreter and the device run one kernel
with one set of arguments. Imports only the tiling helpers, so the exported submission can carry it."""
from __future__ import annotations

from typing import Any

import torch

from kernels.experts.nki_tiling import equal_chunk, pair_tiling


def selective_v1_arguments(x: torch.Tensor, index: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor,
                           params: Any) -> tuple:
    """selective_v1(x, index int32, gate_up, down, i_chunk): I/rank cut into equal chunks of at most
    `params.intermediate_tile` rows."""
    return x, index.to(torch.int32), gate_up, down, equal_chunk(down.shape[1], params.intermediate_tile)


def combine(outputs: torch.Tensor, affinities: torch.Tensor) -> torch.Tensor:
    """selective_v1's outputs [T, k, H] scaled by affinities [T, k] and summed over k, as the baseline's (and
    NxD's forward_selective_loading) selective path."""
    return (outputs * affinities.unsqueeze(-1)).sum(dim=1)


def grouped_v2_arguments(x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, gate_up: torch.Tensor,
                         down: torch.Tensor, params: Any) -> tuple[int, tuple]:
    """(program instances, arguments) of one grouped_v2 launch: the pair tiling the knobs ask for (nki_tiling)."""
    p = pair_tiling(x.shape[0], index.shape[1], x.shape[1], down.shape[1], x.dtype.itemsize, params.cores,
                    params.k_tiles_per_dma, params.i_chunks_per_dma, params.last_i_chunks, params.bufs)
    wide_pairs = p.pairs_per_core() if params.wide_pairs is None else params.wide_pairs
    return p.cores, (x, affinities, index.to(torch.int32), gate_up, down, p.k_tiles_per_load, p.chunks_per_load,
                     p.last_chunks, p.gate_up_bufs, p.down_bufs, wide_pairs, params.fp32_swiglu, params.fp32_affinity)

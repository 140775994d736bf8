"""grouped_v2: the whole decode expert block in one kernel, weights streamed with multi-buffered DMA.

Every (token, slot)'s expert runs as in nki_expert_mlp (fused gate/up GEMV, weight tiles stationary and the
token moving; silu(gate) * up; down projection), its output rounded to the model dtype, scaled by the
affinity (rounded again, as the baseline's `outputs * affinities`) and added into an fp32 accumulator per
token, which is rounded once at the end (the baseline's sum over the k experts). The weights arrive as one
stream of loads (`k_tiles_per_load` 128-row tiles of gate/up, `i_chunks_per_load` chunks of down) cycling
through `bufs` SBUF buffers per kind, each DMA issued bufs - 1 loads ahead of its use, so loads overlap
compute across load and expert boundaries.
"""
import nki
import nki.isa as nisa
import nki.language as nl

from kernels.experts.nki_expert_mlp import (WeightStream, expert_mlp, load_expert_ids, load_tokens, store_hidden_major,
                                            sum_partials)


def load_affinities(affinities):
    """affinities [T, k] -> fp32 [P, T * k], all of them on every partition (per-partition scalar operands)."""
    tokens, top_k = affinities.shape
    pmax = nl.tile_size.pmax
    raw = nl.ndarray((pmax, tokens * top_k), dtype=affinities.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=raw, src=affinities.ap(pattern=[[0, pmax], [1, tokens * top_k]], offset=0))
    wide = nl.ndarray((pmax, tokens * top_k), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=wide, src=raw)
    return wide


@nki.jit
def grouped_v2(x, affinities, index, gate_up, down, i_chunk, k_tiles_per_load, i_chunks_per_load, bufs):
    """x [T, H], affinities [T, k], index [T, k] int32, gate_up [E, H, 2I], down [E, I, H]
    -> this rank's partial MoE output [T, H]."""
    tokens, hidden = x.shape
    top_k = index.shape[1]
    pmax = nl.tile_size.pmax
    h_chunks = hidden // pmax
    slots = tokens * top_k
    out = nl.ndarray((tokens, hidden), dtype=x.dtype, buffer=nl.shared_hbm)
    x_t = load_tokens(x)
    scales = load_affinities(affinities)
    stream = WeightStream(gate_up, down, load_expert_ids(index), slots, i_chunk, k_tiles_per_load, i_chunks_per_load,
                          bufs)
    total = nl.ndarray((pmax, tokens, h_chunks), dtype=nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=total, value=0.0)
    for slot in nl.sequential_range(slots):
        token = slot // top_k
        expert_out = nl.ndarray((pmax, h_chunks), dtype=x.dtype, buffer=nl.sbuf)
        sum_partials(expert_out, expert_mlp(stream, x_t, token, x.dtype))
        scaled = nl.ndarray((pmax, h_chunks), dtype=x.dtype, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=scaled, data=expert_out, op0=nl.multiply, operand0=scales[0:pmax, slot:slot + 1])
        nisa.tensor_tensor(dst=total[0:pmax, token, :], data1=total[0:pmax, token, :], data2=scaled, op=nl.add)
    result = nl.ndarray((pmax, tokens, h_chunks), dtype=x.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=result, src=total)
    store_hidden_major(out, result)
    return out

"""selective_v1: the selected experts' MLPs on the decode tokens, one whole expert per pair of DMAs.

Per (token, slot) the expert's whole gate/up [H, 2I] and down [I, H] weights are gathered by two indirect DMAs
(the expert id read from SBUF as a scalar offset) into one SBUF buffer each, single-buffered: the next
expert's loads wait for this expert's matmuls. Gate/up, silu(gate) * up and down run as in nki_expert_mlp,
accumulating over the whole contraction in PSUM. The output is every slot's expert output in the model
dtype; the launcher scales them by the affinities and sums them.
"""
import nki
import nki.language as nl

from kernels.experts.nki_expert_mlp import (WeightStream, expert_mlp, load_expert_ids, load_tokens, store_hidden_major,
                                            sum_partials)


@nki.jit
def selective_v1(x, index, gate_up, down, i_chunk):
    """x [T, H], index [T, k] int32, gate_up [E, H, 2I], down [E, I, H] -> expert outputs [T * k, H]."""
    tokens, hidden = x.shape
    top_k = index.shape[1]
    pmax = nl.tile_size.pmax
    slots = tokens * top_k
    out = nl.ndarray((slots, hidden), dtype=x.dtype, buffer=nl.shared_hbm)
    x_t = load_tokens(x)
    whole_expert = (hidden // pmax, down.shape[1] // i_chunk)
    stream = WeightStream(gate_up, down, load_expert_ids(index), slots, i_chunk, *whole_expert, 1)
    outputs = nl.ndarray((pmax, slots, hidden // pmax), dtype=x.dtype, buffer=nl.sbuf)
    for slot in nl.sequential_range(slots):
        sum_partials(outputs[0:pmax, slot, :], expert_mlp(stream, x_t, slot // top_k, x.dtype))
    store_hidden_major(out, outputs)
    return out

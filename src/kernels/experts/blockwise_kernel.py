"""The context-encoding expert block as a pair of NKI kernels cut at silu*up | down (the free cut point).

Tokens arrive grouped by expert in blocks of B slots (kernels.experts.blockwise builds the table, as NxD's
blockwise MoE does in the graph before its kernel): `token_ids` [N, B] int32 holds each slot's token
(-1: an empty slot), `block_experts` [1, N] the block's expert, ascending, `slot_affinities` [N, B] the
slot's affinity. Only the blocks of chosen experts exist, and padding tokens have no slots.

- `gate_up_swiglu`: per block, gather the block's token rows by indirect DMA (empty slots skipped, rows
  zeroed first), transpose them on TensorE to xT [P, H/P, B] (h = p * H/P + k, the layout the expert's
  gate/up rows load in as one contiguous run per partition), stream the expert's gate/up weights in by
  indirect DMA (the expert id is a `scalar_offset`), and run gate/up with the block's tokens stationary (one
  stationary load per K tile) and up to 512 weight columns moving, so gate and up land with the tokens on
  partitions, [B, 2I]. SiLU and the multiply follow with the baseline's roundings (or in fp32 with one rounding,
  `fp32_swiglu`: the compiler's MPA schedule), and h = silu(gate) * up, transposed on TensorE to the
  intermediate dim on partitions [ic, chunk, B] (the down projection's stationary), leaves in the model dtype to
  HBM as [N, I, B].
- `down_expert_scatter`: per block, h^T stationary and the expert's down rows moving give the block's
  outputs with tokens on partitions [B, H] in 512-column PSUM tiles; each is rounded and scaled by its
  slot's affinity (or scaled in fp32 and rounded once, `fp32_affinity`), and the block's rows are
  scatter-added into the zeroed output by one indirect DMA with a read-modify-write add (fp32 add, one
  rounding to the model dtype). Blocks run in ascending expert order, so every token sums its experts'
  scaled outputs in ascending expert order, rounding after every add: the baseline's blockwise order.
  The scatters of one token must complete in issue order (one DMA queue on the device).

Both kernels run as an SPMD grid over the physical cores of the logical core (launch as kernel[cores]), each
streaming its share of the weight bytes: gate_up_swiglu splits the blocks (contiguous ranges), and
down_expert_scatter splits the hidden columns, so every core still visits the blocks in ascending expert order
and no two cores write the same output element.
"""
import nki
import nki.isa as nisa
import nki.language as nl

from kernels.experts.grouped_v2_kernel import pair_range
from kernels.experts.nki_expert_mlp import gate_up_rows

OUT_TILE = 512  # fp32 columns of one PSUM bank: the down projection's moving width


def load_table(table, dtype):
    """A [N, B] block table -> [B, N] on chip: block n's slots are column n, one slot per partition."""
    blocks, size = table.shape
    tile = nl.ndarray((size, blocks), dtype=dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=table.ap(pattern=[[1, size], [size, blocks]], offset=0))
    return tile


def load_block_experts(block_experts):
    ids = nl.ndarray(block_experts.shape, dtype=block_experts.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=ids, src=block_experts)
    return ids


def token_rows(table, slots, first=0, columns=None):
    """Columns [first, first + columns) of a [T, H] HBM tensor's rows at the block's token ids (`slots` [B, 1]
    on chip; empty slots are skipped)."""
    _, hidden = table.shape
    size = slots.shape[0]
    width = hidden if columns is None else columns
    return table.ap(pattern=[[hidden, size], [1, width]], offset=first, vector_offset=slots, indirect_dim=0)


def gathered_transposed(x, slots, k_tiles):
    """The block's token rows as xT [P, H/P, B] with xT[p, k, b] = x[token b, p * H/P + k] (zeros in empty slots)."""
    _, hidden = x.shape
    pmax = nl.tile_size.pmax
    size = slots.shape[0]
    rows = nl.ndarray((size, hidden), dtype=x.dtype, buffer=nl.sbuf)
    nisa.memset(dst=rows, value=0.0)
    nisa.dma_copy(dst=rows, src=token_rows(x, slots), oob_mode=nisa.oob_mode.skip)
    x_t = nl.ndarray((pmax, k_tiles, size), dtype=x.dtype, buffer=nl.sbuf)
    for k in nl.affine_range(k_tiles):
        flipped = nl.ndarray((pmax, size), dtype=x.dtype, buffer=nl.psum)
        nisa.nc_transpose(dst=flipped, data=rows[0:size, k:hidden:k_tiles])
        nisa.tensor_copy(dst=x_t[0:pmax, k, 0:size], src=flipped)
    return x_t


@nki.jit
def gate_up_swiglu(x, token_ids, block_experts, gate_up, i_chunk, fp32_swiglu):
    """x [T, H], token_ids [N, B] int32, block_experts [1, N] int32, gate_up [E, H, 2I]
    -> h = silu(gate) * up [N, I, B] in x's dtype."""
    _, hidden = x.shape
    blocks, size = token_ids.shape
    width = gate_up.shape[2]
    intermediate = width // 2
    chunks = intermediate // i_chunk
    pmax = nl.tile_size.pmax
    k_tiles = hidden // pmax
    h = nl.ndarray((blocks, intermediate, size), dtype=x.dtype, buffer=nl.shared_hbm)
    slots = load_table(token_ids, token_ids.dtype)
    experts = load_block_experts(block_experts)
    inner = nl.float32 if fp32_swiglu else x.dtype  # fp32: gate, up and silu unrounded, one rounding at h
    first, count = pair_range(nl.program_id(0), nl.num_programs(0), blocks)
    for n in nl.sequential_range(first, first + count):
        x_t = gathered_transposed(x, slots[0:size, n:n + 1], k_tiles)
        weights = nl.ndarray((pmax, k_tiles, width), dtype=gate_up.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=weights, src=gate_up_rows(gate_up, experts[0:1, n:n + 1], k_tiles, 0, k_tiles))
        partials = nl.ndarray((size, width), dtype=nl.float32, buffer=nl.psum)  # 512 columns per PSUM bank
        for g in nl.affine_range(-(-width // OUT_TILE)):
            columns = slice(g * OUT_TILE, min(width, (g + 1) * OUT_TILE))
            for k in nl.sequential_range(k_tiles):
                nisa.nc_matmul(dst=partials[0:size, columns], stationary=x_t[0:pmax, k, 0:size],
                               moving=weights[0:pmax, k, columns])
        gated = nl.ndarray((size, width), dtype=inner, buffer=nl.sbuf)
        nisa.tensor_copy(dst=gated, src=partials)
        act = nl.ndarray((size, intermediate), dtype=inner, buffer=nl.sbuf)
        nisa.activation(dst=act, op=nl.silu, data=gated[0:size, 0:intermediate])
        h_rows = nl.ndarray((size, intermediate), dtype=x.dtype, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=h_rows, data1=act, data2=gated[0:size, intermediate:width], op=nl.multiply)
        h_t = nl.ndarray((i_chunk, chunks, size), dtype=x.dtype, buffer=nl.sbuf)
        for c in nl.affine_range(chunks):
            flipped = nl.ndarray((i_chunk, size), dtype=x.dtype, buffer=nl.psum)
            nisa.nc_transpose(dst=flipped, data=h_rows[0:size, c * i_chunk:(c + 1) * i_chunk])
            nisa.tensor_copy(dst=h_t[0:i_chunk, c, 0:size], src=flipped)
        nisa.dma_copy(dst=h.ap(pattern=[[size, i_chunk], [i_chunk * size, chunks], [1, size]],
                               offset=n * intermediate * size), src=h_t)
    return h


def zero_columns(out, first, columns):
    """out[:, first:first + columns] = 0."""
    tokens, _ = out.shape
    pmax = nl.tile_size.pmax
    zeros = nl.ndarray((pmax, columns), dtype=out.dtype, buffer=nl.sbuf)
    nisa.memset(dst=zeros, value=0.0)
    for r0 in range(0, tokens, pmax):
        n = min(pmax, tokens - r0)
        nisa.dma_copy(dst=out[r0:r0 + n, first:first + columns], src=zeros[0:n, :])


@nki.jit
def down_expert_scatter(h, token_ids, block_experts, slot_affinities, down, tokens, i_chunk, fp32_affinity):
    """h [N, I, B], token_ids [N, B] int32, block_experts [1, N] int32, slot_affinities [N, B], down [E, I, H]
    -> this rank's partial MoE output [tokens, H] (zero in the rows of tokens no slot holds)."""
    blocks, intermediate, size = h.shape
    hidden = down.shape[2]
    dtype = h.dtype
    chunks = intermediate // i_chunk
    columns = hidden // nl.num_programs(0)  # this core's share of the hidden columns
    first = nl.program_id(0) * columns
    out_tile = min(OUT_TILE, columns)
    out = nl.ndarray((tokens, hidden), dtype=dtype, buffer=nl.shared_hbm)
    zero_columns(out, first, columns)
    slots = load_table(token_ids, token_ids.dtype)
    scales = load_table(slot_affinities, nl.float32)  # exact: per-partition scalars are fp32
    experts = load_block_experts(block_experts)
    inner = nl.float32 if fp32_affinity else dtype  # fp32: the down output scaled unrounded, one rounding
    for n in nl.sequential_range(blocks):
        h_t = nl.ndarray((i_chunk, chunks, size), dtype=dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=h_t, src=h.ap(pattern=[[size, i_chunk], [i_chunk * size, chunks], [1, size]],
                                        offset=n * intermediate * size))
        weights = nl.ndarray((i_chunk, chunks, columns), dtype=down.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=weights, src=down.ap(pattern=[[hidden, i_chunk], [i_chunk * hidden, chunks], [1, columns]],
                                               offset=first, scalar_offset=experts[0:1, n:n + 1], indirect_dim=0))
        scaled = nl.ndarray((size, columns), dtype=dtype, buffer=nl.sbuf)
        for m in nl.affine_range(columns // out_tile):
            tile = slice(m * out_tile, (m + 1) * out_tile)
            partials = nl.ndarray((size, out_tile), dtype=nl.float32, buffer=nl.psum)
            for c in nl.sequential_range(chunks):
                nisa.nc_matmul(dst=partials, stationary=h_t[0:i_chunk, c, 0:size], moving=weights[0:i_chunk, c, tile])
            outputs = nl.ndarray((size, out_tile), dtype=inner, buffer=nl.sbuf)
            nisa.tensor_copy(dst=outputs, src=partials)
            nisa.tensor_scalar(dst=scaled[0:size, tile], data=outputs, op0=nl.multiply,
                               operand0=scales[0:size, n:n + 1])
        nisa.dma_copy(dst=token_rows(out, slots[0:size, n:n + 1], first, columns), src=scaled, dst_rmw_op=nl.add,
                      oob_mode=nisa.oob_mode.skip)
    return out

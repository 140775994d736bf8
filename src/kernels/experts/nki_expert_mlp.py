"""NKI building blocks of the decode expert kernels (selective_v1, grouped_v2): loading the tokens and the
selected experts' weights, and one expert's MLP on one token with the baseline's rounding after every op.

Layouts (P = 128 partitions, T tokens, k experts per token, I intermediate columns per rank in chunks of ic):
- x [T, H] loads as xT [P, H/P, T] with h = p * H/P + k, so K tile k of the gate/up contraction is
  xT[:, k, t] and every partition reads contiguous runs;
- gate/up weights load with the same h mapping as [P, kn, 2I], one contiguous run per partition. The 2I
  columns (gate [0, I), up [I, 2I)) form 2 * I/ic output groups of ic columns whose results land with the
  intermediate dim on partitions, [ic, group]; silu(gate) * up is then hT [ic, I/ic, 1], directly the
  moving operand of the down projection, whose weights load as [ic, cn, H] (rows of down on partitions);
- the down projection's output has h = m * P + p, [P, H/P].
Weight tiles are stationary and one token column moves (a decode GEMV: LoadStationary is fast, the moving
operand tiny). Each accumulation group is one (output group, weight load) pair written by consecutive
matmuls, so no two groups interleave in a PSUM bank; the loads' fp32 partial sums are added on VectorE
while rounding to the model dtype. Experts are chosen by the DMAs: the weight views take the expert id as
a `scalar_offset` read from SBUF, so only the selected experts' bytes move.
"""
import nki.isa as nisa
import nki.language as nl


def load_tokens(x):
    """x [T, H] -> xT [P, H/P, T]."""
    tokens, hidden = x.shape
    pmax = nl.tile_size.pmax
    k_tiles = hidden // pmax
    x_t = nl.ndarray((pmax, k_tiles, tokens), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=x_t, src=x.ap(pattern=[[k_tiles, pmax], [1, k_tiles], [hidden, tokens]], offset=0))
    return x_t


def load_expert_ids(index):
    """index [T, k] int32 -> [1, T * k] on one partition; slot t * k + s holds token t's s-th expert."""
    tokens, top_k = index.shape
    ids = nl.ndarray((1, tokens * top_k), dtype=index.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=ids, src=index)
    return ids


def gate_up_rows(gate_up, expert, k_tiles, first, size):
    """gate_up[expert] rows p * k_tiles + k for first <= k < first + size, as [P, size * 2I]."""
    width = gate_up.shape[2]
    return gate_up.ap(pattern=[[k_tiles * width, nl.tile_size.pmax], [1, size * width]], offset=first * width,
                      scalar_offset=expert, indirect_dim=0)


def down_rows(down, expert, i_chunk, first, size):
    """down[expert] rows c * i_chunk + p for first <= c < first + size, as [i_chunk, size, H]."""
    hidden = down.shape[2]
    return down.ap(pattern=[[hidden, i_chunk], [i_chunk * hidden, size], [1, hidden]],
                   offset=first * i_chunk * hidden, scalar_offset=expert, indirect_dim=0)


def spans(count, per_load):
    """(first, size) of the consecutive loads of at most per_load items that cover count items."""
    out = []
    for first in range(0, count, per_load):
        out.append((first, min(per_load, count - first)))
    return out


class WeightStream(nl.NKIObject):
    """Every selected expert's weights in the order the kernel uses them: per slot, its gate/up loads, then
    its down loads. Each kind cycles through `bufs` SBUF buffers, and `take()` issues DMAs up to bufs - 1
    loads ahead of the one it returns, so with bufs >= 2 the next loads overlap this load's matmuls. A
    buffer is refilled only after the load that used it was consumed; bufs = 1 is plain load-then-compute."""

    def __init__(self, gate_up, down, ids, slots, i_chunk, k_tiles_per_load, i_chunks_per_load, bufs):
        _, hidden, width = gate_up.shape
        pmax = nl.tile_size.pmax
        self.gate_up, self.down, self.ids, self.i_chunk, self.bufs = gate_up, down, ids, i_chunk, bufs
        self.k_tiles = hidden // pmax
        self.i_chunks = down.shape[1] // i_chunk
        self.gate_up_spans = spans(self.k_tiles, min(k_tiles_per_load, self.k_tiles))
        self.down_spans = spans(self.i_chunks, min(i_chunks_per_load, self.i_chunks))
        self.gate_up_bufs = []
        self.down_bufs = []
        for _ in range(bufs):
            self.gate_up_bufs.append(nl.ndarray((pmax, self.gate_up_spans[0][1], width), dtype=gate_up.dtype,
                                                buffer=nl.sbuf))
            self.down_bufs.append(nl.ndarray((i_chunk, self.down_spans[0][1], hidden), dtype=down.dtype,
                                             buffer=nl.sbuf))
        self.per_slot = len(self.gate_up_spans) + len(self.down_spans)
        self.total = slots * self.per_slot
        self.issued = 0
        self.used = 0

    def _buffer(self, step):
        """The SBUF tile load `step` lands in, and its HBM source."""
        slot, part = step // self.per_slot, step % self.per_slot
        expert = self.ids[0:1, slot:slot + 1]
        gate_ups, downs = len(self.gate_up_spans), len(self.down_spans)
        if part < gate_ups:
            first, size = self.gate_up_spans[part]
            tile = self.gate_up_bufs[(slot * gate_ups + part) % self.bufs]
            return tile[:, 0:size, :], gate_up_rows(self.gate_up, expert, self.k_tiles, first, size)
        first, size = self.down_spans[part - gate_ups]
        tile = self.down_bufs[(slot * downs + part - gate_ups) % self.bufs]
        return tile[:, 0:size, :], down_rows(self.down, expert, self.i_chunk, first, size)

    def take(self):
        """The next load's SBUF tile, after issuing every DMA up to bufs - 1 loads ahead of it."""
        ahead = min(self.used + self.bufs, self.total)
        for step in range(self.issued, ahead):
            dst, src = self._buffer(step)
            nisa.dma_copy(dst=dst, src=src)
        self.issued = max(self.issued, ahead)
        tile, _ = self._buffer(self.used)
        self.used += 1
        return tile


def project(partials, load, weights, size, acts, first, column):
    """partials[:, g, load] = sum over this load's K tiles k of weights[:, k, group g].T @ acts[:, first + k, column]."""
    rows, groups, _ = partials.shape
    depth = weights.shape[0]
    for g in nl.affine_range(groups):
        for k in nl.sequential_range(size):
            nisa.nc_matmul(dst=partials[0:rows, g, load:load + 1],
                           stationary=weights[0:depth, k, g * rows:(g + 1) * rows],
                           moving=acts[0:depth, first + k, column:column + 1])


def sum_partials(dst, partials):
    """dst [rows, groups] = the loads' partial sums added in fp32 and rounded once to dst's dtype."""
    nisa.tensor_reduce(dst=dst, op=nl.add, data=partials, axis=2)


def gated(partials, i_chunks, dtype):
    """gate/up partials [ic, 2 * I/ic, loads] -> hT = silu(gate) * up [ic, I/ic, 1]; gate and up, silu(gate)
    and the product are each rounded to `dtype`, as the baseline does."""
    rows = partials.shape[0]
    gate_up = nl.ndarray((rows, 2 * i_chunks), dtype=dtype, buffer=nl.sbuf)
    sum_partials(gate_up, partials)
    act = nl.ndarray((rows, i_chunks), dtype=dtype, buffer=nl.sbuf)
    nisa.activation(dst=act, op=nl.silu, data=gate_up[0:rows, 0:i_chunks])
    h_t = nl.ndarray((rows, i_chunks, 1), dtype=dtype, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=h_t, data1=act, data2=gate_up[0:rows, i_chunks:2 * i_chunks], op=nl.multiply)
    return h_t


def expert_mlp(stream, x_t, token, dtype):
    """The stream's next expert on xT's column `token`: the down projection's fp32 partial sums
    [P, H/P, loads], for the caller to round (sum_partials) where it needs the expert output."""
    pmax = nl.tile_size.pmax
    gate_up = nl.ndarray((stream.i_chunk, 2 * stream.i_chunks, len(stream.gate_up_spans)), dtype=nl.float32,
                         buffer=nl.psum)
    for load in range(len(stream.gate_up_spans)):
        first, size = stream.gate_up_spans[load]
        project(gate_up, load, stream.take(), size, x_t, first, token)
    h_t = gated(gate_up, stream.i_chunks, dtype)
    h_chunks = stream.down.shape[2] // pmax
    down = nl.ndarray((pmax, h_chunks, len(stream.down_spans)), dtype=nl.float32, buffer=nl.psum)
    for load in range(len(stream.down_spans)):
        first, size = stream.down_spans[load]
        project(down, load, stream.take(), size, h_t, first, 0)
    return down


def store_hidden_major(out, tile):
    """tile [P, rows, H/P] holding h = m * P + p -> out [rows, H] in one DMA."""
    rows, hidden = out.shape
    pmax = nl.tile_size.pmax
    nisa.dma_copy(dst=out.ap(pattern=[[1, pmax], [hidden, rows], [pmax, hidden // pmax]], offset=0), src=tile)

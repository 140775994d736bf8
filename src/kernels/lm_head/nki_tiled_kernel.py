"""NKI vocabulary projection: logits [T, V] = x [T, H] @ w^T for this rank's vocabulary shard, T rows
(each row's last token in context encoding, one token per row in token generation), the weight streamed
from HBM once in slabs of columns.

On a grid of 1 or 2 program instances (the physical cores of an LNC=2 logical core) each core takes one
contiguous half of the vocabulary columns, so each reads half of the weight. Per core: x^T [P, H/P, T] by PE
transposes (bit-exact; hidden element j P + p on partition p), then per slab of `slab_cols` columns one
DMA of w^T rows [P, H/P, slab] (partition p holding rows j P + p, runs of `slab` elements; the next
slab's load is issued before this slab's logits are stored, so the store never holds the queues), and per
PSUM bank of 512 columns x^T (stationary, T <= 128 columns) times the slab (moving), accumulated over H/P
in fp32 and rounded once to the output dtype, as the baseline's bf16 matmul with fp32 accumulation.
"""
import nki
import nki.isa as nisa
import nki.language as nl

P = 128
BANK = 512


def _x_transposed(x, identity):
    rows, hidden = x.shape
    chunks = hidden // P
    x_rows = nl.ndarray((rows, hidden), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=x_rows, src=x)
    x_t = nl.ndarray((P, chunks, rows), dtype=x.dtype, buffer=nl.sbuf)
    per_bank = max(1, 2 * BANK // rows)
    for j0 in nl.static_range(0, chunks, per_bank):
        count = min(per_bank, chunks - j0)
        staged = nl.ndarray((P, count, rows), dtype=x.dtype, buffer=nl.psum)
        for j in nl.static_range(count):
            nisa.nc_matmul(dst=staged[:, j, :], stationary=x_rows[:, (j0 + j) * P:(j0 + j + 1) * P],
                           moving=identity[0:rows, 0:rows], is_transpose=True)
        nisa.tensor_copy(dst=x_t[:, j0:j0 + count, :], src=staged)
    return x_t


def _load_slab(w, s0, width):
    """w^T rows [P, H/P, width] of columns [s0, s0 + width): partition p holds rows j P + p."""
    hidden, vocab = w.shape
    chunks = hidden // P
    slab = nl.ndarray((P, chunks, width), dtype=w.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=slab, src=w.ap(pattern=[[vocab, P], [P * vocab, chunks], [1, width]], offset=s0))
    return slab


@nki.jit
def lm_head(x, w, slab_cols):
    """x [T, H]; w [H, V] (this rank's shard, input dim first) -> logits [T, V] in x's dtype."""
    rows, hidden = x.shape
    vocab = w.shape[1]
    chunks = hidden // P
    cores, core = nl.num_programs(0), nl.program_id(0)
    share = -(-vocab // cores)
    first, last = core * share, min(vocab, (core + 1) * share)
    identity = nl.shared_identity_matrix(n=P, dtype=x.dtype)
    out = nl.ndarray((rows, vocab), dtype=x.dtype, buffer=nl.shared_hbm)
    x_t = _x_transposed(x, identity)
    starts = list(range(first, last, slab_cols))
    slabs = [_load_slab(w, starts[0], min(slab_cols, last - starts[0]))]
    for k, s0 in enumerate(starts):
        if k + 1 < len(starts):   # the next slab's load goes ahead of this slab's store on the DMA queues
            slabs.append(_load_slab(w, starts[k + 1], min(slab_cols, last - starts[k + 1])))
        slab = slabs[k]
        width = slab.shape[2]
        logits = nl.ndarray((rows, width), dtype=x.dtype, buffer=nl.sbuf)
        for c0 in nl.static_range(0, width, BANK):
            cols = min(BANK, width - c0)
            acc = nl.ndarray((rows, cols), dtype=nl.float32, buffer=nl.psum)
            for j in nl.static_range(chunks):
                nisa.nc_matmul(dst=acc, stationary=x_t[:, j, :], moving=slab[:, j, c0:c0 + cols])
            if (c0 // BANK) % 2:
                nisa.tensor_copy(dst=logits[:, c0:c0 + cols], src=acc)
            else:
                nisa.activation(dst=logits[:, c0:c0 + cols], op=nl.copy, data=acc)
        nisa.dma_copy(dst=out[:, s0:s0 + width], src=logits)
    return out

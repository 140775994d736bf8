"""NKI context-encoding attention (the prompt bucket of every batch row at once): q/k/v projections, q/k
RMSNorm, RoPE, causal GQA attention, the KV cache write and the o projection, in one kernel.

Layout (P = 128 partitions, D = head_dim, tiles of up to P tokens of one row, n tokens in a tile):
- x^T [P, tiles, H/P, P]: hidden element p H/P + j of token t on partition p, by PE transposes (bit-exact).
- projections, weights streamed once: per column chunk (up to 512 columns, whole heads) the weight rows
  [P, H/P, chunk] are loaded, then every token tile accumulates x^T (stationary) times them (moving) over
  H/P in one fp32 PSUM bank, rounded once to bf16 rows [tokens, heads, D] (tokens on partitions).
- RMSNorm and RoPE along the free axis of those rows (cos/sin rows as the model passes them, broadcast over
  the heads by the DMA); the new k and v rows go to the cache in one DMA per tile.
- q^T and k^T per head [D, tokens] by PE transposes; scores of a query tile [n, keys] (q^T stationary,
  k^T moving, keys up to the tile's last position: key tiles above the diagonal are skipped, their
  probabilities are exactly 0 in the baseline too), the softmax along the free axis, the probabilities
  transposed per key tile so that the value rows [keys, D] are the stationary side: attn^T [D, n] per head.
  The (tile, head) pairs are software-pipelined by one step (the next scores before this value product).
- o projection, weights read once, after the attention (issuing those DMAs earlier did not shorten the cost
  model's estimate): per column chunk of the output, attn^T of every head (stationary) times the head's
  o_proj^T rows (moving), accumulated over the heads in one fp32 PSUM bank.
- LNC=2 (a grid of 2): the cores split the q heads, k and v (core 0 makes k, core 1 v, then they swap
  the rows) and the output columns (after swapping their attn^T halves); see `context_attention`.

Numerics follow kernels.attention.baseline (its context path) rounding point by rounding point: the
projections, the normed heads, each RoPE product and their sum, the scores, the scaled scores, the
probabilities, the value product and the o projection are each rounded to bf16 once; the norm statistics
and the softmax run in fp32 over the whole causal row (not an online softmax: T <= 640 keys fit one row,
and rescaling partial sums would round differently from the baseline). What cannot match bit for bit:
fp32 sums accumulate in another order, exp and rsqrt are the engine's, and p = e * (1 / sum) stands in
for e / sum (no divide on the engines).
"""
import nki
import nki.isa as nisa
import nki.language as nl

P = 128
BANK = 512  # fp32 per PSUM bank per partition: the widest matmul output


def _tiles(seq):
    return [(t0, min(P, seq - t0)) for t0 in range(0, seq, P)]


def _x_transposed(x, batch, seq, identity):
    """x^T [P, tiles of all rows, H/P, P] in x's dtype: xt[p, i, j, t] = x[row t of tile i, p H/P + j] (the
    weight rows' order below), by PE transposes of strided column slices (bit-exact)."""
    hidden = x.shape[1]
    chunks = hidden // P
    tiles = _tiles(seq)
    xt = nl.ndarray((P, batch * len(tiles), chunks, P), dtype=x.dtype, buffer=nl.sbuf)
    per_bank = max(1, 2 * BANK // P)   # bf16 transposes of P tokens per PSUM bank
    for b in nl.static_range(batch):
        for i, (t0, n) in enumerate(tiles):
            rows = nl.ndarray((P, hidden), dtype=x.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=rows[0:n, :], src=x[b * seq + t0:b * seq + t0 + n, :])
            tile = b * len(tiles) + i
            for j0 in nl.static_range(0, chunks, per_bank):
                count = min(per_bank, chunks - j0)
                staged = nl.ndarray((P, count, P), dtype=x.dtype, buffer=nl.psum)
                for j in nl.static_range(count):
                    nisa.nc_matmul(dst=staged[:, j, 0:n],
                                   stationary=rows.ap(pattern=[[hidden, n], [chunks, P]], offset=j0 + j),
                                   moving=identity[0:n, 0:n], is_transpose=True)
                nisa.tensor_copy(dst=xt[:, tile, j0:j0 + count, 0:n], src=staged[:, :, 0:n])
    return xt


def _project_rows(xt, w, tiles, head_dim, first, heads, chunk_heads, dtype):
    """rows [P, tiles, heads, D] = x @ w for w's heads [first, first + heads) (w [H, all heads D], input dim
    first) rounded once; the weight is streamed in column chunks of `chunk_heads` heads, each read once,
    partition p holding the H/P consecutive rows p H/P + j (one run per partition when a chunk spans w's
    full width)."""
    hidden, width = w.shape
    chunks = hidden // P
    rows = nl.ndarray((P, len(tiles), heads, head_dim), dtype=dtype, buffer=nl.sbuf)
    for h0 in nl.static_range(0, heads, chunk_heads):
        count = min(chunk_heads, heads - h0)
        cols = count * head_dim
        block = nl.ndarray((P, chunks, cols), dtype=w.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=block, src=w.ap(pattern=[[chunks * width, P], [width, chunks], [1, cols]],
                                          offset=(first + h0) * head_dim))
        for i, (_, n) in enumerate(tiles):
            acc = nl.ndarray((P, cols), dtype=nl.float32, buffer=nl.psum)
            for j in nl.static_range(chunks):
                nisa.nc_matmul(dst=acc[0:n, :], stationary=xt[:, i, j, 0:n], moving=block[:, j, :])
            if i % 2:
                nisa.tensor_copy(dst=rows[0:n, i, h0:h0 + count, :], src=acc[0:n, :])
            else:
                nisa.activation(dst=rows[0:n, i, h0:h0 + count, :], op=nl.copy, data=acc[0:n, :])
    return rows


def _norm_rope(rows, i, n, weight, cos, sin, eps):
    """RMSNorm (one weight for every head) then RoPE on rows[0:n, i] [n, heads, D], in place; cos and sin
    [n, heads, D] (sin with its first half negated: rotate_half(x) * sin = [x2 * -sin1, x1 * sin2])."""
    _, _, heads, head_dim = rows.shape
    half = head_dim // 2
    x = rows[0:n, i, :, :]
    squares = nl.ndarray((P, heads, head_dim), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=squares[0:n], data1=x, data2=x, op=nl.multiply)
    rstd = nl.ndarray((P, heads), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=rstd[0:n], op=nl.add, data=squares[0:n], axis=2)
    nisa.activation(dst=rstd[0:n], op=nl.rsqrt, data=rstd[0:n], scale=1.0 / head_dim, bias=eps)
    normed = nl.ndarray((P, heads, head_dim), dtype=rows.dtype, buffer=nl.sbuf)
    for h in nl.static_range(heads):
        nisa.scalar_tensor_tensor(dst=normed[0:n, h, :], data=x[:, h, :], op0=nl.multiply, operand0=rstd[0:n, h:h + 1],
                                  op1=nl.multiply, operand1=weight[0:n, :])
    # x * cos + rotate_half(x) * sin, every product and the sum rounded
    cos_part = nl.ndarray((P, heads, head_dim), dtype=rows.dtype, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=cos_part[0:n], data1=normed[0:n], data2=cos[0:n, 0:heads], op=nl.multiply)
    sin_part = nl.ndarray((P, heads, head_dim), dtype=rows.dtype, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=sin_part[0:n, :, 0:half], data1=normed[0:n, :, half:head_dim],
                       data2=sin[0:n, 0:heads, 0:half], op=nl.multiply, engine=nisa.engine.gpsimd)
    nisa.tensor_tensor(dst=sin_part[0:n, :, half:head_dim], data1=normed[0:n, :, 0:half],
                       data2=sin[0:n, 0:heads, half:head_dim], op=nl.multiply)
    nisa.tensor_tensor(dst=x, data1=cos_part[0:n], data2=sin_part[0:n], op=nl.add)


def _rope_tables(cos, sin, r0, n, heads):
    """cos and sin rows [r0, r0 + n) broadcast over `heads` [P, heads, D] (the DMA repeats each row), sin's
    first half negated."""
    head_dim = cos.shape[1]
    tables = []
    for src in (cos, sin):
        t = nl.ndarray((P, heads, head_dim), dtype=src.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=t[0:n], src=src.ap(pattern=[[head_dim, n], [0, heads], [1, head_dim]], offset=r0 * head_dim))
        tables.append(t)
    half = head_dim // 2
    nisa.tensor_scalar(dst=tables[1][0:n, :, 0:half], data=tables[1][0:n, :, 0:half], op0=nl.multiply,
                       operand0=-1.0, engine=nisa.engine.gpsimd)
    return tables


def _broadcast_row(weight):
    """weight [D] on every partition."""
    width = weight.shape[0]
    t = nl.ndarray((P, width), dtype=weight.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=weight.ap(pattern=[[0, P], [1, width]], offset=0))
    return t


def _write_cache(cache, rows, i, b, t0, n):
    """cache[b, :, t0:t0 + n] = rows[0:n, i] ([n, kv heads, D]) in one DMA."""
    _, kv_heads, max_seq, head_dim = cache.shape
    nisa.dma_copy(dst=cache.ap(pattern=[[head_dim, n], [max_seq * head_dim, kv_heads], [1, head_dim]],
                               offset=(b * kv_heads * max_seq + t0) * head_dim), src=rows[0:n, i, :, :])


def _transpose_heads(dst, c0, rows, i, n, identity):
    """dst[:, h, c0:c0 + n] = rows[0:n, i, h, :]^T for every head (PE transposes, a PSUM bank holding several)."""
    _, _, heads, head_dim = rows.shape
    per_bank = max(1, 2 * BANK // P)
    for h0 in nl.static_range(0, heads, per_bank):
        count = min(per_bank, heads - h0)
        staged = nl.ndarray((head_dim, count, P), dtype=rows.dtype, buffer=nl.psum)
        for h in nl.static_range(count):
            nisa.nc_matmul(dst=staged[:, h, 0:n], stationary=rows[0:n, i, h0 + h, :], moving=identity[0:n, 0:n],
                           is_transpose=True)
        nisa.tensor_copy(dst=dst[:, h0:h0 + count, c0:c0 + n], src=staged[:, :, 0:n])


def _softmax(scores, t0, n, scale, dtype):
    """Probabilities [n, t0 + n] in `dtype` from fp32 scores [n, t0 + n] (keys [0, t0 + n) of the query tile
    at positions [t0, t0 + n)): rounded, scaled and rounded, masked causally, softmax in fp32."""
    keys = t0 + n
    s = nl.ndarray((P, keys), dtype=dtype, buffer=nl.sbuf)
    nisa.activation(dst=s[0:n], op=nl.copy, data=scores[0:n, 0:keys])
    nisa.tensor_scalar(dst=s[0:n], data=s[0:n], op0=nl.multiply, operand0=scale)
    masked = nl.ndarray((P, keys), dtype=nl.float32, buffer=nl.sbuf)
    if t0:
        nisa.tensor_copy(dst=masked[0:n, 0:t0], src=s[0:n, 0:t0])
    # query p (position t0 + p) keeps key t0 + k where p - k >= 0
    nisa.affine_select(dst=masked[0:n, t0:keys], pattern=[[-1, n]], channel_multiplier=1, on_true_tile=s[0:n, t0:keys],
                       on_false_value=-3.4028234663852886e38, cmp_op=nl.greater_equal, offset=0)
    neg_top = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=neg_top[0:n], op=nl.maximum, data=masked[0:n], axis=1, negate=True)
    e = nl.ndarray((P, keys), dtype=nl.float32, buffer=nl.sbuf)
    total = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation_reduce(dst=e[0:n], op=nl.exp, data=masked[0:n], reduce_op=nl.add, reduce_res=total[0:n],
                           bias=neg_top[0:n])
    nisa.reciprocal(dst=total[0:n], data=total[0:n])
    p = nl.ndarray((P, keys), dtype=dtype, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=p[0:n], data=e[0:n], op0=nl.multiply, operand0=total[0:n])
    return p


def _probabilities(q_t, k_t, tiles, tile, i, h, g, scale, dtype):
    """Softmax probabilities [n, keys] of query tile i (global tile `tile`) of one row, head h (KV head g);
    k_t [D, kv heads, S] is the row's K^T."""
    t0, n = tiles[i]
    keys = t0 + n
    scores = nl.ndarray((P, keys), dtype=nl.float32, buffer=nl.psum)
    for c0 in nl.static_range(0, keys, BANK):
        c1 = min(keys, c0 + BANK)
        nisa.nc_matmul(dst=scores[0:n, c0:c1], stationary=q_t[:, tile, h, 0:n], moving=k_t[:, g, c0:c1])
    return _softmax(scores, t0, n, scale, dtype)


def _weighted_values(attn_t, p, v_rows, tiles, tile_base, i, h, g, identity):
    """attn_t[:, tile_base + i, h, 0:n] = (p v)^T: p transposed per key tile, so that the value rows
    [keys, D] are the stationary side."""
    head_dim = attn_t.shape[0]
    n = tiles[i][1]
    staged = nl.ndarray((P, i + 1, P), dtype=p.dtype, buffer=nl.psum)
    for k, (k0, m) in enumerate(tiles[:i + 1]):
        nisa.nc_matmul(dst=staged[0:m, k, 0:n], stationary=p[0:n, k0:k0 + m], moving=identity[0:n, 0:n],
                       is_transpose=True)
    p_t = nl.ndarray((P, i + 1, P), dtype=p.dtype, buffer=nl.sbuf)
    for k, (_, m) in enumerate(tiles[:i + 1]):
        nisa.tensor_copy(dst=p_t[0:m, k, 0:n], src=staged[0:m, k, 0:n])
    acc = nl.ndarray((head_dim, P), dtype=nl.float32, buffer=nl.psum)
    for k, (_, m) in enumerate(tiles[:i + 1]):
        nisa.nc_matmul(dst=acc[:, 0:n], stationary=v_rows[0:m, tile_base + k, g, :], moving=p_t[0:m, k, 0:n])
    nisa.activation(dst=attn_t[:, tile_base + i, h, 0:n], op=nl.copy, data=acc[:, 0:n])


def _attend_row(attn_t, q_t, k_t, v_rows, tiles, tile_base, first_head, group, scale, identity):
    """Every query tile and head (this core's heads, the first being q head `first_head`) of one row,
    software-pipelined by one step: the scores of the next (tile, head) are issued before the value
    product of the current one, so that TensorE computes them while the other engines run the softmax."""
    heads = q_t.shape[2]
    pending = None
    for i in nl.static_range(len(tiles)):
        for h in nl.static_range(heads):
            g = (first_head + h) // group
            p = _probabilities(q_t, k_t, tiles, tile_base + i, i, h, g, scale, attn_t.dtype)
            if pending is not None:
                _weighted_values(attn_t, *pending, identity)
            pending = (p, v_rows, tiles, tile_base, i, h, g)
    _weighted_values(attn_t, *pending, identity)


def _load_out_weights(o_w, first, last, cols, head_dim):
    """o_proj^T columns [first, last) as blocks [D, heads, cols], one DMA each: [(first column, block)]."""
    heads = o_w.shape[0] // head_dim
    hidden = o_w.shape[1]
    blocks = []
    for c0 in nl.static_range(first, last, cols):
        width = min(cols, last - c0)
        block = nl.ndarray((head_dim, heads, width), dtype=o_w.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=block, src=o_w.ap(pattern=[[hidden, head_dim], [head_dim * hidden, heads], [1, width]],
                                            offset=c0))
        blocks.append((c0, block))
    return blocks


def _project_out(out, heads, blocks, batch, seq):
    """out rows, the blocks' columns = attn @ o_proj^T; `heads` lists (attn^T tensor [D, tiles, h, P], index)
    of every q head in order. Accumulated over the heads in fp32 (a PSUM bank per 512 columns) and rounded
    once; one store per block and tile."""
    tiles = _tiles(seq)
    for c0, block in blocks:
        width = block.shape[2]
        for b in nl.static_range(batch):
            for i, (t0, n) in enumerate(tiles):
                tile = b * len(tiles) + i
                rows = nl.ndarray((P, width), dtype=out.dtype, buffer=nl.sbuf)
                for k0 in nl.static_range(0, width, BANK):
                    k1 = min(width, k0 + BANK)
                    acc = nl.ndarray((P, k1 - k0), dtype=nl.float32, buffer=nl.psum)
                    for h, (attn_t, index) in enumerate(heads):
                        nisa.nc_matmul(dst=acc[0:n, :], stationary=attn_t[:, tile, index, 0:n],
                                       moving=block[:, h, k0:k1])
                    if (k0 // BANK) % 2:
                        nisa.tensor_copy(dst=rows[0:n, k0:k1], src=acc[0:n])
                    else:
                        nisa.activation(dst=rows[0:n, k0:k1], op=nl.copy, data=acc[0:n])
                r0 = b * seq + t0
                nisa.dma_copy(dst=out[r0:r0 + n, c0:c0 + width], src=rows[0:n])


def _exchange(mine, core):
    """The other core's tensor of the same shape as `mine` (SBUF to SBUF on chip)."""
    theirs = nl.ndarray(mine.shape, dtype=mine.dtype, buffer=nl.sbuf)
    nisa.sendrecv(src=mine, dst=theirs, send_to_rank=1 - core, recv_from_rank=1 - core, pipe_id=0)
    return theirs


@nki.jit
def context_attention(x, q_w, k_w, v_w, o_w, q_norm, k_norm, cos, sin, k_cache, v_cache, eps, scale,
                      qkv_cols, out_cols):
    """x [B S, H] (row b's tokens at positions 0..S-1); q_w [H, Hq D], k_w and v_w [H, Hkv D], o_w [Hq D, H]
    (input dim first); q_norm and k_norm [D]; cos and sin [B S, D]; k_cache and v_cache [B, Hkv, max_seq, D],
    written at [0, S); scale = 1 / sqrt(D) -> out [B S, H]. `qkv_cols` columns (whole heads) of the q/k/v
    weights and `out_cols` columns of o_proj^T are streamed per chunk.

    On a grid of 2 (LNC=2) core c projects and attends with q heads [c Hq/2, (c+1) Hq/2); core 0 projects
    k (and normalises, rotates and caches it), core 1 v, and they swap those rows; they then swap their
    attn^T halves and core c computes output columns [c H/2, (c+1) H/2) from every head. Every weight byte
    is read once, every MAC done once (x^T, K^T and the rope tables are made on both cores)."""
    tokens, hidden = x.shape
    batch, kv_heads, _, head_dim = k_cache.shape
    seq = tokens // batch
    q_heads = q_w.shape[1] // head_dim
    group = q_heads // kv_heads
    cores, core = nl.num_programs(0), nl.program_id(0)
    own = q_heads // cores
    first_head = core * own
    tiles = _tiles(seq)
    chunk_heads = max(1, qkv_cols // head_dim)
    identity = nl.shared_identity_matrix(n=P, dtype=x.dtype)
    out = nl.ndarray((tokens, hidden), dtype=x.dtype, buffer=nl.shared_hbm)

    xt = _x_transposed(x, batch, seq, identity)
    all_tiles = [(b, t0, n) for b in range(batch) for t0, n in tiles]
    row_tiles = [(t0, n) for _, t0, n in all_tiles]
    makes_k, makes_v = core == 0, core == cores - 1
    q_rows = _project_rows(xt, q_w, row_tiles, head_dim, first_head, own, chunk_heads, x.dtype)
    k_rows = _project_rows(xt, k_w, row_tiles, head_dim, 0, kv_heads, chunk_heads, x.dtype) if makes_k else None
    v_rows = _project_rows(xt, v_w, row_tiles, head_dim, 0, kv_heads, chunk_heads, x.dtype) if makes_v else None
    q_weight = _broadcast_row(q_norm)
    k_weight = _broadcast_row(k_norm) if makes_k else None
    q_t = nl.ndarray((head_dim, len(all_tiles), own, P), dtype=x.dtype, buffer=nl.sbuf)
    for i, (b, t0, n) in enumerate(all_tiles):
        cos_t, sin_t = _rope_tables(cos, sin, b * seq + t0, n, max(own, kv_heads))
        _norm_rope(q_rows, i, n, q_weight, cos_t, sin_t, eps)
        _transpose_heads(q_t[:, i, :, :], 0, q_rows, i, n, identity)
        if makes_k:
            _norm_rope(k_rows, i, n, k_weight, cos_t, sin_t, eps)
            _write_cache(k_cache, k_rows, i, b, t0, n)
        if makes_v:
            _write_cache(v_cache, v_rows, i, b, t0, n)
    if cores > 1:   # core 0 made the k rows, core 1 the v rows: swap
        if makes_k:
            v_rows = _exchange(k_rows, core)
        else:
            k_rows = _exchange(v_rows, core)
    k_t = nl.ndarray((head_dim, batch, kv_heads, seq), dtype=x.dtype, buffer=nl.sbuf)
    for i, (b, t0, n) in enumerate(all_tiles):
        _transpose_heads(k_t[:, b, :, :], t0, k_rows, i, n, identity)

    attn_t = nl.ndarray((head_dim, len(all_tiles), own, P), dtype=x.dtype, buffer=nl.sbuf)
    for b in nl.static_range(batch):
        _attend_row(attn_t, q_t, k_t[:, b, :, :], v_rows, tiles, b * len(tiles), first_head, group, scale,
                    identity)
    halves = [attn_t]
    if cores > 1:
        halves.insert(1 - core, _exchange(attn_t, core))   # in head order: core 0's heads first
    heads = [(half, h) for half in halves for h in range(own)]
    cols = -(-hidden // cores)
    out_blocks = _load_out_weights(o_w, core * cols, min(hidden, (core + 1) * cols), out_cols, head_dim)
    _project_out(out, heads, out_blocks, batch, seq)
    return out

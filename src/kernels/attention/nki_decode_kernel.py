"""NKI decode attention (one new token per batch row): q/k/v projections, q/k RMSNorm, RoPE, GQA
attention over the KV cache with the cache update, and the o projection, in one kernel.

Layouts (P = 128 partitions, D = head_dim, B = batch, G = q heads per KV head):
- x^T [P, H/P, B]: the hidden dim on partitions. Each [P, D] block of a projection weight is a
  stationary tile and the few decode tokens are the moving side, so every head's projection lands in
  PSUM as [D, B], head_dim on partitions: `qkv` [D, Hq + 2 Hkv, B].
- RMSNorm and RoPE work along head_dim, so the q and k heads are turned into rows [(head, row), D]
  by a PE transpose (bit-exact), normalised and rotated along the free axis, and turned back.
- Scores [G, kv_len + 1] (q heads of a group on partitions): q^T [D, G] stationary against K^T
  [D, positions] (the cache rows transposed on the PE) and the new k; the last column is the new
  token's "active" score. Softmax runs along the free axis without leaving the chip.
- Values: probabilities transposed to [positions, G] so the cache rows [positions, D] are the
  stationary side; the output lands as attn^T [D, G], the layout the o projection contracts over.
- The o projection streams o_proj^T [Hq*D, H] in column chunks against attn^T [D, Hq, B] and
  writes out [B, H] (this rank's partial sum).

Numerics follow kernels.attention.baseline rounding point by rounding point: projections, norms,
each RoPE product and sum, scores, scores / sqrt(D), probabilities, both value products and their sum,
and the o projection are each rounded to bf16; the norm statistics and the softmax run in fp32, with
masked scores at the fp32 minimum (exp gives exactly 0 there, as for the baseline's bf16 minimum).
What cannot match bit for bit: fp32 sums are accumulated in another order (PSUM tiles, engine
reductions), exp is the engine's, and p = e / sum is computed as e * (1 / sum) (no divide on the
hardware ALUs).
"""
import nki
import nki.isa as nisa
import nki.language as nl


def _project_qkv(x, weights, head_dim, weight_tiles):
    """qkv [D, heads, B] in x's dtype: every head of q, k and v (in that order) for every row. One pass
    over x^T; each weight is streamed in blocks of `weight_tiles` 128-row tiles."""
    batch, hidden = x.shape
    parts = nl.tile_size.pmax
    tiles = hidden // parts
    x_t = nl.ndarray((parts, tiles, batch), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=x_t, src=x.ap(pattern=[[1, parts], [parts, tiles], [hidden, batch]], offset=0))
    heads = [w.shape[1] // head_dim for w in weights]
    acc = nl.ndarray((head_dim, sum(heads), batch), dtype=nl.float32, buffer=nl.psum)
    for t0 in nl.static_range(0, tiles, weight_tiles):
        count = min(weight_tiles, tiles - t0)
        first = 0
        for w, n_heads in zip(weights, heads):
            width = n_heads * head_dim
            block = nl.ndarray((parts, count, width), dtype=w.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=block, src=w.ap(pattern=[[width, parts], [parts * width, count], [1, width]],
                                              offset=t0 * parts * width))
            for t in nl.static_range(count):
                for h in nl.static_range(n_heads):
                    nisa.nc_matmul(dst=acc[:, first + h, :], stationary=block[:, t, h * head_dim:(h + 1) * head_dim],
                                   moving=x_t[:, t0 + t, :])
            first += n_heads
    qkv = nl.ndarray((head_dim, sum(heads), batch), dtype=x.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=qkv, src=acc)
    return qkv


def _broadcast_rows(dst, src, heads, rows, offset):
    """dst [heads * rows, D]: row (h, r) = src row `offset + r` ([N, D] in HBM), for every h."""
    width = dst.shape[1]
    nisa.dma_copy(dst=dst, src=src.ap(pattern=[[0, heads], [width, rows], [1, width]], offset=offset * width))


def _norm_rope(qkv, q_norm, k_norm, cos, sin, identity, q_heads, kv_heads, eps):
    """RMSNorm (q_norm / k_norm) then RoPE on every q and k head of every row, in place in qkv."""
    head_dim, _, batch = qkv.shape
    heads = q_heads + kv_heads
    half = head_dim // 2
    per_chunk = nl.tile_size.pmax // heads
    for b0 in nl.static_range(0, batch, per_chunk):
        rows = min(per_chunk, batch - b0)
        n = heads * rows
        x = nl.ndarray((n, head_dim), dtype=qkv.dtype, buffer=nl.psum)
        nisa.nc_matmul(dst=x, stationary=qkv[:, 0:heads, b0:b0 + rows], moving=identity[0:head_dim, 0:head_dim],
                       is_transpose=True)
        w = nl.ndarray((n, head_dim), dtype=q_norm.dtype, buffer=nl.sbuf)
        _broadcast_rows(w[0:q_heads * rows, :], q_norm, q_heads * rows, 1, 0)
        _broadcast_rows(w[q_heads * rows:n, :], k_norm, kv_heads * rows, 1, 0)
        cos_rows = nl.ndarray((n, head_dim), dtype=cos.dtype, buffer=nl.sbuf)
        sin_rows = nl.ndarray((n, head_dim), dtype=sin.dtype, buffer=nl.sbuf)
        _broadcast_rows(cos_rows, cos, heads, rows, b0)
        _broadcast_rows(sin_rows, sin, heads, rows, b0)

        squares = nl.ndarray((n, head_dim), dtype=nl.float32, buffer=nl.sbuf)
        rstd = nl.ndarray((n, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation_reduce(dst=squares, op=nl.square, data=x, reduce_op=nl.add, reduce_res=rstd)
        nisa.tensor_scalar(dst=rstd, data=rstd, op0=nl.multiply, operand0=1.0 / head_dim, op1=nl.add, operand1=eps)
        nisa.activation(dst=rstd, op=nl.rsqrt, data=rstd)
        normed = nl.ndarray((n, head_dim), dtype=qkv.dtype, buffer=nl.sbuf)
        nisa.scalar_tensor_tensor(dst=normed, data=x, op0=nl.multiply, operand0=rstd, op1=nl.multiply, operand1=w)

        # x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1); every product and the sum rounded
        turned = nl.ndarray((n, head_dim), dtype=qkv.dtype, buffer=nl.sbuf)
        nisa.scalar_tensor_tensor(dst=turned[:, 0:half], data=normed[:, half:head_dim], op0=nl.multiply,
                                  operand0=-1.0, op1=nl.multiply, operand1=sin_rows[:, 0:half])
        nisa.tensor_tensor(dst=turned[:, half:head_dim], data1=normed[:, 0:half], data2=sin_rows[:, half:head_dim],
                           op=nl.multiply)
        nisa.tensor_tensor(dst=normed, data1=normed, data2=cos_rows, op=nl.multiply)
        nisa.tensor_tensor(dst=normed, data1=normed, data2=turned, op=nl.add)

        back = nl.ndarray((head_dim, n), dtype=qkv.dtype, buffer=nl.psum)
        nisa.nc_matmul(dst=back, stationary=normed, moving=identity[0:n, 0:n], is_transpose=True)
        nisa.tensor_copy(dst=qkv[:, 0:heads, b0:b0 + rows], src=back)


def _load_positions(positions, group):
    """Each row's position: int32 [group, B] (row 0 feeds scalar offsets) and fp32 [group, B] (mask bounds)."""
    batch = positions.shape[1]
    as_int = nl.ndarray((group, batch), dtype=positions.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=as_int, src=positions.ap(pattern=[[0, group], [1, batch]], offset=0))
    as_float = nl.ndarray((group, batch), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=as_float, src=as_int)
    return as_int, as_float


def _chunks(kv_len, kv_tile):
    """(index, first position, size) of each tile of cache positions [0, kv_len)."""
    size = min(kv_tile, kv_len)
    return [(c, c0, min(size, kv_len - c0)) for c, c0 in enumerate(range(0, kv_len, size))]


def _load_cache_rows(cache, b, g, kv_len, kv_tile):
    """rows [T, chunks, D]: rows[p, c] = cache[b, g, c * T + p] for the positions [0, kv_len)."""
    _, kv_heads, max_seq, head_dim = cache.shape
    chunks = _chunks(kv_len, kv_tile)
    size = chunks[0][2]
    full = kv_len // size
    base = (b * kv_heads + g) * max_seq * head_dim
    rows = nl.ndarray((size, len(chunks), head_dim), dtype=cache.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=rows[:, 0:full, :],
                  src=cache.ap(pattern=[[head_dim, size], [size * head_dim, full], [1, head_dim]], offset=base))
    if full < len(chunks):
        tail = chunks[-1][2]
        nisa.dma_copy(dst=rows[0:tail, full, :],
                      src=cache.ap(pattern=[[head_dim, tail], [1, head_dim]], offset=base + full * size * head_dim))
    return rows


def _keys_transposed(k_cache, b, g, kv_len, kv_tile, identity):
    """K^T [D, kv_len] for row b, KV head g: cache rows transposed on the PE, one PSUM bank at a time."""
    head_dim = k_cache.shape[3]
    rows = _load_cache_rows(k_cache, b, g, kv_len, kv_tile)
    keys = nl.ndarray((head_dim, kv_len), dtype=k_cache.dtype, buffer=nl.sbuf)
    bank = nl.tile_size.psum_fmax
    for g0 in nl.static_range(0, kv_len, bank):
        width = min(bank, kv_len - g0)
        staged = nl.ndarray((head_dim, width), dtype=k_cache.dtype, buffer=nl.psum)
        for c, c0, n in _chunks(kv_len, kv_tile):
            if g0 <= c0 < g0 + width:
                nisa.nc_matmul(dst=staged[:, c0 - g0:c0 - g0 + n], stationary=rows[0:n, c, :],
                               moving=identity[0:n, 0:n], is_transpose=True)
        nisa.tensor_copy(dst=keys[:, g0:g0 + width], src=staged)
    return keys


def _scores(q_t, keys, k_new, kv_len):
    """PSUM [G, kv_len + 1] fp32: q . k for every cached position, then the new token's own k."""
    group = q_t.shape[1]
    bank = nl.tile_size.psum_fmax
    scores = nl.ndarray((group, kv_len + 1), dtype=nl.float32, buffer=nl.psum)
    for c0 in nl.static_range(0, kv_len, bank):
        width = min(bank, kv_len - c0)
        nisa.nc_matmul(dst=scores[:, c0:c0 + width], stationary=q_t, moving=keys[:, c0:c0 + width])
    nisa.nc_matmul(dst=scores[:, kv_len:kv_len + 1], stationary=q_t, moving=k_new)
    return scores


def _softmax(scores, position, kv_len, scale, dtype):
    """Probabilities [G, kv_len + 1] in `dtype`: NxDI's split softmax over the cached positions before
    `position` (the others masked) and the active column kv_len, in fp32."""
    group = scores.shape[0]
    s = nl.ndarray((group, kv_len + 1), dtype=dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=s, src=scores)
    nisa.tensor_scalar(dst=s, data=s, op0=nl.multiply, operand0=scale)
    masked = nl.ndarray((group, kv_len), dtype=nl.float32, buffer=nl.sbuf)
    top = nl.ndarray((group, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.range_select(dst=masked, on_true_tile=s[:, 0:kv_len], comp_op0=nl.less, comp_op1=nl.greater_equal,
                      bound0=position, bound1=0.0, reduce_cmd=nisa.reduce_cmd.reset_reduce, reduce_res=top,
                      reduce_op=nl.maximum)
    active = s[:, kv_len:kv_len + 1]
    nisa.tensor_tensor(dst=top, data1=top, data2=active, op=nl.maximum)
    neg_top = nl.ndarray((group, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=neg_top, data=top, op0=nl.multiply, operand0=-1.0)
    e = nl.ndarray((group, kv_len + 1), dtype=nl.float32, buffer=nl.sbuf)
    total = nl.ndarray((group, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation_reduce(dst=e[:, 0:kv_len], op=nl.exp, data=masked, reduce_op=nl.add, reduce_res=total,
                           bias=neg_top)
    nisa.activation(dst=e[:, kv_len:kv_len + 1], op=nl.exp, data=active, bias=neg_top)
    nisa.tensor_tensor(dst=total, data1=total, data2=e[:, kv_len:kv_len + 1], op=nl.add)
    nisa.reciprocal(dst=total, data=total)
    p = nl.ndarray((group, kv_len + 1), dtype=dtype, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=p, data=e, op0=nl.multiply, operand0=total)
    return p


def _row_on_partition_0(column, identity, dtype):
    """A [N, 1] SBUF column as a [1, N] SBUF row (PE transpose)."""
    n = column.shape[0]
    staged = nl.ndarray((1, n), dtype=dtype, buffer=nl.psum)
    nisa.nc_matmul(dst=staged, stationary=column, moving=identity[0:n, 0:n], is_transpose=True)
    row = nl.ndarray((1, n), dtype=dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=row, src=staged)
    return row


def _weighted_values(dst, p, values, v_new, identity, kv_len, kv_tile):
    """dst [D, G] = (p_prior @ V_prior)^T + (p_active * v_new)^T, each product rounded before the sum."""
    group = p.shape[0]
    head_dim = values.shape[2]
    chunks = _chunks(kv_len, kv_tile)
    size = chunks[0][2]
    staged = nl.ndarray((size, len(chunks), group), dtype=p.dtype, buffer=nl.psum)
    for c, c0, n in chunks:
        nisa.nc_matmul(dst=staged[0:n, c, :], stationary=p[:, c0:c0 + n], moving=identity[0:group, 0:group],
                       is_transpose=True)
    p_t = nl.ndarray((size, len(chunks), group), dtype=p.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=p_t, src=staged)
    prior_acc = nl.ndarray((head_dim, group), dtype=nl.float32, buffer=nl.psum)
    for c, c0, n in chunks:
        nisa.nc_matmul(dst=prior_acc, stationary=values[0:n, c, :], moving=p_t[0:n, c, :])
    active_acc = nl.ndarray((head_dim, group), dtype=nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=active_acc, stationary=_row_on_partition_0(v_new, identity, p.dtype),
                   moving=_row_on_partition_0(p[:, kv_len:kv_len + 1], identity, p.dtype))
    prior = nl.ndarray((head_dim, group), dtype=p.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=prior, src=prior_acc)
    active = nl.ndarray((head_dim, group), dtype=p.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=active, src=active_acc)
    nisa.tensor_tensor(dst=dst, data1=prior, data2=active, op=nl.add)


def _write_cache_slot(cache, column, b, g, position):
    """cache[b, g, position] = column [D, 1] (SBUF); `position` is a 1x1 SBUF int32 (a dynamic offset)."""
    _, kv_heads, max_seq, head_dim = cache.shape
    nisa.dma_copy(dst=cache.ap(pattern=[[1, head_dim], [1, 1]], offset=(b * kv_heads + g) * max_seq * head_dim,
                               scalar_offset=position, indirect_dim=2), src=column)


def _project_out(attn_t, o_w, out_cols, dtype):
    """out [B, H] (HBM) = attn [B, Hq*D] @ o_proj^T, with attn^T [D, Hq, B] stationary per head."""
    head_dim, q_heads, batch = attn_t.shape
    hidden = o_w.shape[1]
    out_sb = nl.ndarray((batch, hidden), dtype=dtype, buffer=nl.sbuf)
    for c0 in nl.static_range(0, hidden, out_cols):
        width = min(out_cols, hidden - c0)
        w = nl.ndarray((head_dim, q_heads, width), dtype=o_w.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=w, src=o_w.ap(pattern=[[hidden, head_dim], [head_dim * hidden, q_heads], [1, width]],
                                        offset=c0))
        acc = nl.ndarray((batch, width), dtype=nl.float32, buffer=nl.psum)
        for h in nl.static_range(q_heads):
            nisa.nc_matmul(dst=acc, stationary=attn_t[:, h, :], moving=w[:, h, :])
        nisa.tensor_copy(dst=out_sb[:, c0:c0 + width], src=acc)
    out = nl.ndarray((batch, hidden), dtype=dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=out_sb)
    return out


@nki.jit
def decode_attention(x, q_w, k_w, v_w, o_w, q_norm, k_norm, cos, sin, positions, k_cache, v_cache,
                     kv_len, eps, scale, kv_tile, weight_tiles, out_cols):
    """x [B, H]; q_w [H, Hq*D], k_w and v_w [H, Hkv*D], o_w [Hq*D, H] (input dim first); q_norm and k_norm
    [D]; cos and sin [B, D]; positions [1, B] int32; k_cache and v_cache [B, Hkv, max_seq, D], read at
    [0, kv_len) and written at each row's position; scale = 1 / sqrt(D) -> out [B, H]."""
    batch = x.shape[0]
    _, kv_heads, _, head_dim = k_cache.shape
    q_heads = q_w.shape[1] // head_dim
    group = q_heads // kv_heads
    identity = nl.shared_identity_matrix(n=nl.tile_size.pmax, dtype=x.dtype)
    qkv = _project_qkv(x, (q_w, k_w, v_w), head_dim, weight_tiles)
    _norm_rope(qkv, q_norm, k_norm, cos, sin, identity, q_heads, kv_heads, eps)
    pos_int, pos_float = _load_positions(positions, group)
    attn_t = nl.ndarray((head_dim, q_heads, batch), dtype=x.dtype, buffer=nl.sbuf)
    for b in nl.static_range(batch):
        for g in nl.static_range(kv_heads):
            q_t = qkv[:, g * group:(g + 1) * group, b]
            k_new = qkv[:, q_heads + g, b:b + 1]
            v_new = qkv[:, q_heads + kv_heads + g, b:b + 1]
            keys = _keys_transposed(k_cache, b, g, kv_len, kv_tile, identity)
            p = _softmax(_scores(q_t, keys, k_new, kv_len), pos_float[:, b:b + 1], kv_len, scale, x.dtype)
            values = _load_cache_rows(v_cache, b, g, kv_len, kv_tile)
            _weighted_values(attn_t[:, g * group:(g + 1) * group, b], p, values, v_new, identity, kv_len, kv_tile)
            _write_cache_slot(k_cache, k_new, b, g, pos_int[0:1, b:b + 1])
            _write_cache_slot(v_cache, v_new, b, g, pos_int[0:1, b:b + 1])
    return _project_out(attn_t, o_w, out_cols, x.dtype)

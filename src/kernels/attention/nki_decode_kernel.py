"""NKI decode attention (one new token per batch row): q/k/v projections, q/k RMSNorm, RoPE, GQA
attention over the KV cache with the cache update, and the o projection, in one kernel that runs on
the physical cores of a logical core (an SPMD grid: `decode_attention[2](...)` at LNC=2; a launch
without a grid runs the same program on one core).

Work split (P = 128 partitions, D = head_dim, B = batch, G = q heads per KV head, n = cores):
- q projection: by contraction. Core c multiplies hidden rows [c H/n, (c+1) H/n) of q_proj^T, P x R
  rows (R = H / (n P)), partition p holding the R consecutive rows c H/n + p R + j: one contiguous
  run of R full rows per partition (16 KiB at the real shapes). k_proj^T is read whole by core 0 and
  v_proj^T by core 1 (H / P consecutive rows per partition). Every head lands in PSUM as [D, B] (the
  weight block is the stationary side, the few tokens, x^T in the same row order, the moving side):
  [D, Hq + 2 Hkv, B] fp32, zero where the core does not contribute.
- exchange (nisa.sendrecv): the cores swap their fp32 partial sums and both round the same total
  once to bf16 (fp32 addition is commutative, so both hold identical q, k and v). Core 0 has read
  the K cache and turned it into K^T, core 1 the V cache; they swap those too, so every weight and
  cache byte leaves HBM once.
- RMSNorm and RoPE (every q and k head, on both cores): the heads are turned into rows
  [(head, row), D] by a PE transpose (bit-exact), normalised and rotated along the free axis (every
  product and the sum rounded as the baseline rounds them), and turned back.
- attention (every head, on both cores, so that neither needs the other's attention output):
  scores [G, kv_len + 1] (q^T [D, G] stationary against K^T [D, positions] and the new k), the split
  softmax along the free axis, probabilities transposed to [positions, G] so the cache rows are the
  stationary side of the value product; attn^T [D, Hq, B].
- o projection: by output columns. Core c computes out[:, c H/n : (c+1) H/n] from every head: the
  o_proj^T rows of a head [D, H/n] are the stationary side in P-column tiles, attn^T of the head the
  moving side, accumulated over the heads in fp32 PSUM (one rounding per output, as the baseline).
  Tile t holds the columns T p + t (T = H / (n P)), so each partition writes T consecutive outputs.
- The KV cache is read in blocks of L = ceil(kv_len / kv_tile) consecutive positions per partition
  (one run per partition) and written at each row's position (core 0 the new k, core 1 the new v).
  `decode_attention_new_kv` is the same program with the cache read only: the new k and v rows go to
  outputs [B, Hkv, 1, D] instead, for a KV-cache manager that writes the cache itself (NxDI's).

DMAs run in program order on the queues of the partitions they touch, so the program order is the
streaming order: the small inputs (single runs), q_proj^T, k_proj^T / v_proj^T, the cache,
`out_heads_early` heads of o_proj^T, the partial-sum exchange, `out_heads_mid` more heads, the cache
swap, the rest of o_proj^T, the cache slots, the output: a DMA whose input is not ready holds its
queues, so each exchange is preceded by enough weights to keep them busy until it can start.

Numerics follow kernels.attention.baseline rounding point by rounding point: projections, norms,
RoPE products and sum, scores, scaled scores, probabilities, both value products, their sum and the
o projection are each rounded to bf16; the norm statistics and the softmax run in fp32, with masked
scores at the fp32 minimum (exp gives exactly 0 there, as for the baseline's bf16 minimum). What
cannot match bit for bit: fp32 sums are accumulated in another order (PSUM tiles, the two cores'
partials, engine reductions), exp is the engine's, and p = e / sum is computed as e * (1 / sum)
(no divide on the hardware ALUs).
"""
import nki
import nki.isa as nisa
import nki.language as nl

P = 128


def _x_rows(x):
    """x [B, H] in SBUF: one contiguous run per row."""
    rows = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=rows, src=x)
    return rows


def _x_columns(x_rows, rows, first, identity):
    """x^T [P, R, B] for hidden rows [first, first + P R): element (p, j, b) = x[b, first + p R + j], by PE
    transposes of the strided row slices (bit-exact)."""
    batch, hidden = x_rows.shape
    per = rows // P
    staged = nl.ndarray((P, per, batch), dtype=x_rows.dtype, buffer=nl.psum)
    for j in nl.static_range(per):
        nisa.nc_matmul(dst=staged[:, j, :], stationary=x_rows.ap(pattern=[[hidden, batch], [per, P]], offset=first + j),
                       moving=identity[0:batch, 0:batch], is_transpose=True)
    x_t = nl.ndarray((P, per, batch), dtype=x_rows.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=x_t, src=staged)
    return x_t


def _weight_rows(w, first, rows, chunks):
    """w^T rows [first, first + rows) as [P, R, width] SBUF blocks, partition p holding the R consecutive
    rows first + p R + j, loaded in `chunks` DMAs along j (one contiguous run per partition each)."""
    width = w.shape[1]
    per = rows // P
    block = nl.ndarray((P, per, width), dtype=w.dtype, buffer=nl.sbuf)
    step = -(-per // chunks)
    for j0 in nl.static_range(0, per, step):
        count = min(step, per - j0)
        nisa.dma_copy(dst=block[:, j0:j0 + count, :],
                      src=w.ap(pattern=[[per * width, P], [1, count * width]], offset=(first + j0) * width))
    return block


def _project(acc, first_head, block, x_t, head_dim):
    """acc[:, first_head + h, :] (+)= block[:, j, head h]^T x_t[:, j, :], over every j and head."""
    per, width = block.shape[1], block.shape[2]
    for j in nl.static_range(per):
        for h in nl.static_range(width // head_dim):
            nisa.nc_matmul(dst=acc[:, first_head + h, :], stationary=block[:, j, h * head_dim:(h + 1) * head_dim],
                           moving=x_t[:, j, :])


class _Projection:
    """This core's share of the q/k/v projections: hidden rows [core H/n, (core+1) H/n) of q_proj^T, all of
    k_proj^T on core 0 and all of v_proj^T on the last core. The weight DMAs are issued in two steps (q,
    then k/v) so that other loads can stream between them; `project` then accumulates PSUM
    [D, Hq + 2 Hkv, B] fp32, zero where this core does not contribute."""

    def __init__(self, x_rows, q_w, k_w, v_w, head_dim, core, cores, identity):
        batch, hidden = x_rows.shape
        self.q_heads, self.kv_heads = q_w.shape[1] // head_dim, k_w.shape[1] // head_dim
        self.head_dim, self.batch, self.core, self.cores = head_dim, batch, core, cores
        share = hidden // cores
        self.x_q = _x_columns(x_rows, share, core * share, identity)
        self.x_kv = _x_columns(x_rows, hidden, 0, identity)
        self.blocks = []
        self.weights = (q_w, k_w, v_w)

    def load_q_weights(self, chunks):
        q_w = self.weights[0]
        share = q_w.shape[0] // self.cores
        self.blocks.append((0, _weight_rows(q_w, self.core * share, share, chunks), self.x_q))

    def load_kv_weights(self):
        _, k_w, v_w = self.weights
        hidden = k_w.shape[0]
        if self.core == 0:
            self.blocks.append((self.q_heads, _weight_rows(k_w, 0, hidden, 1), self.x_kv))
        if self.core == self.cores - 1:
            self.blocks.append((self.q_heads + self.kv_heads, _weight_rows(v_w, 0, hidden, 1), self.x_kv))

    def project(self):
        q_heads, kv_heads = self.q_heads, self.kv_heads
        acc = nl.ndarray((self.head_dim, q_heads + 2 * kv_heads, self.batch), dtype=nl.float32, buffer=nl.psum)
        for own, first in ((self.core == 0, q_heads), (self.core == self.cores - 1, q_heads + kv_heads)):
            if not own:
                nisa.memset(dst=acc[:, first:first + kv_heads, :], value=0.0)
        for first, block, x_t in self.blocks:
            _project(acc, first, block, x_t, self.head_dim)
        return acc


def _partial_sbuf(acc):
    """The fp32 partial sums in SBUF (what sendrecv sends)."""
    mine = nl.ndarray(acc.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=mine, op=nl.copy, data=acc)
    return mine


def _complete_qkv(acc, mine, core, cores, dtype):
    """qkv [D, Hq + 2 Hkv, B] in `dtype` (SBUF): the cores' partial sums added in fp32 and rounded once."""
    qkv = nl.ndarray(acc.shape, dtype=dtype, buffer=nl.sbuf)
    if cores == 1:
        nisa.tensor_copy(dst=qkv, src=acc)
        return qkv
    theirs = nl.ndarray(acc.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.sendrecv(src=mine, dst=theirs, send_to_rank=1 - core, recv_from_rank=1 - core, pipe_id=0)
    nisa.tensor_tensor(dst=qkv, data1=mine, data2=theirs, op=nl.add)
    return qkv


class _RopeTables:
    """Per chunk of batch rows: norm weights, cos and sin broadcast to rows [(head, row), D] (sin with its
    first half negated: rotate_half(x) * sin = [x2 * -sin1, x1 * sin2]). The source rows are loaded once
    (one run each) and copied to the rows on chip (a partition shuffle when they fit one 32-partition
    group, else a broadcasting DMA)."""

    def __init__(self, q_norm, k_norm, cos, sin, q_heads, kv_heads, b0, rows):
        head_dim = cos.shape[1]
        half = head_dim // 2
        heads = q_heads + kv_heads
        n = heads * rows
        self.tables = nl.ndarray((n, 3, head_dim), dtype=cos.dtype, buffer=nl.sbuf)
        if n <= 32:
            sources = nl.ndarray((2 + 2 * rows, head_dim), dtype=cos.dtype, buffer=nl.sbuf)
            for i, t in enumerate((q_norm, k_norm)):
                nisa.dma_copy(dst=sources[i:i + 1, :], src=t.ap(pattern=[[head_dim, 1], [1, head_dim]], offset=0))
            for i, t in enumerate((cos, sin)):
                nisa.dma_copy(dst=sources[2 + i * rows:2 + (i + 1) * rows, :], src=t[b0:b0 + rows, :])
            # row (h, r) takes source 0 (q_norm) or 1 (k_norm), then cos / sin row r
            unused = [255] * (32 - n)
            norm_mask = [0] * (q_heads * rows) + [1] * (kv_heads * rows) + unused
            for t, first in ((0, None), (1, 2), (2, 2 + rows)):
                mask = norm_mask if first is None else [first + r for _ in range(heads) for r in range(rows)] + unused
                nisa.nc_stream_shuffle(dst=self.tables[:, t, :], src=sources, shuffle_mask=mask)
        else:
            for t, (src, r0, r1) in enumerate(((q_norm, 0, 1), (cos, b0, b0 + rows), (sin, b0, b0 + rows))):
                if t == 0:
                    _broadcast_rows(self.tables[0:q_heads * rows, 0, :], q_norm, q_heads * rows, 1, 0)
                    _broadcast_rows(self.tables[q_heads * rows:n, 0, :], k_norm, kv_heads * rows, 1, 0)
                else:
                    _broadcast_rows(self.tables[:, t, :], src, heads, rows, r0)
        nisa.tensor_scalar(dst=self.tables[:, 2, 0:half], data=self.tables[:, 2, 0:half], op0=nl.multiply,
                           operand0=-1.0, engine=nisa.engine.gpsimd)
        self.w, self.cos, self.sin = self.tables[:, 0, :], self.tables[:, 1, :], self.tables[:, 2, :]


def _broadcast_rows(dst, src, heads, rows, offset):
    """dst [heads * rows, D]: row (h, r) = src row `offset + r` ([N, D] in HBM), for every h."""
    width = dst.shape[1]
    nisa.dma_copy(dst=dst, src=src.ap(pattern=[[0, heads], [width, rows], [1, width]], offset=offset * width))


def _norm_rope(qkv, tables, identity, q_heads, kv_heads, eps):
    """RMSNorm (q_norm / k_norm) then RoPE on every q and k head of every row, in place in qkv."""
    head_dim, _, batch = qkv.shape
    heads = q_heads + kv_heads
    half = head_dim // 2
    per_chunk = P // heads
    for (b0, rows), table in zip(_row_chunks(batch, per_chunk), tables):
        n = heads * rows
        x = nl.ndarray((n, head_dim), dtype=qkv.dtype, buffer=nl.psum)
        nisa.nc_matmul(dst=x, stationary=qkv[:, 0:heads, b0:b0 + rows], moving=identity[0:head_dim, 0:head_dim],
                       is_transpose=True)
        squares = nl.ndarray((n, head_dim), dtype=nl.float32, buffer=nl.sbuf)
        rstd = nl.ndarray((n, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation_reduce(dst=squares, op=nl.square, data=x, reduce_op=nl.add, reduce_res=rstd)
        nisa.activation(dst=rstd, op=nl.rsqrt, data=rstd, scale=1.0 / head_dim, bias=eps)
        normed = nl.ndarray((n, head_dim), dtype=qkv.dtype, buffer=nl.sbuf)
        nisa.scalar_tensor_tensor(dst=normed, data=x, op0=nl.multiply, operand0=rstd, op1=nl.multiply,
                                  operand1=table.w)
        # x * cos + rotate_half(x) * sin, every product and the sum rounded
        cos_part = nl.ndarray((n, head_dim), dtype=qkv.dtype, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=cos_part, data1=normed, data2=table.cos, op=nl.multiply)
        sin_part = nl.ndarray((n, head_dim), dtype=qkv.dtype, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=sin_part[:, 0:half], data1=normed[:, half:head_dim], data2=table.sin[:, 0:half],
                           op=nl.multiply, engine=nisa.engine.gpsimd)
        nisa.tensor_tensor(dst=sin_part[:, half:head_dim], data1=normed[:, 0:half],
                           data2=table.sin[:, half:head_dim], op=nl.multiply)
        nisa.tensor_tensor(dst=cos_part, data1=cos_part, data2=sin_part, op=nl.add)
        back = nl.ndarray((head_dim, n), dtype=qkv.dtype, buffer=nl.psum)
        nisa.nc_matmul(dst=back, stationary=cos_part, moving=identity[0:n, 0:n], is_transpose=True)
        nisa.activation(dst=qkv[:, 0:heads, b0:b0 + rows], op=nl.copy, data=back)


def _row_chunks(batch, per_chunk):
    return [(b0, min(per_chunk, batch - b0)) for b0 in range(0, batch, per_chunk)]


def _load_positions(positions, group):
    """Each row's position: int32 [1, B] (scalar offsets of the cache writes) and fp32 [group, B] (mask
    bounds), loaded as one run and broadcast to the group's partitions on chip."""
    batch = positions.shape[1]
    as_int = nl.ndarray((1, batch), dtype=positions.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=as_int, src=positions)
    as_float = nl.ndarray((group, batch), dtype=nl.float32, buffer=nl.sbuf)
    if group <= 32:
        row = nl.ndarray((1, batch), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=row, src=as_int, engine=nisa.engine.gpsimd)
        nisa.nc_stream_shuffle(dst=as_float, src=row, shuffle_mask=[0] * 32)
    else:
        wide = nl.ndarray((group, batch), dtype=positions.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=wide, src=positions.ap(pattern=[[0, group], [1, batch]], offset=0))
        nisa.tensor_copy(dst=as_float, src=wide, engine=nisa.engine.gpsimd)
    return as_int, as_float


class _Blocks:
    """Cache positions [0, kv_len) in blocks of L consecutive positions per partition: partition p holds
    positions [p L, p L + L) (the last partition may hold fewer). Chunk j is position p L + j of every
    partition p < parts(j)."""

    def __init__(self, kv_len, kv_tile):
        self.per = -(-kv_len // min(kv_tile, kv_len))
        self.parts_total = -(-kv_len // self.per)
        self.kv_len = kv_len

    def parts(self, j):
        return sum(1 for p in range(self.parts_total) if p * self.per + j < self.kv_len)

    def groups(self, j0=0, j1=None):
        """(first chunk, end chunk, partitions) for runs of chunks in [j0, j1) with equal partitions."""
        j1 = self.per if j1 is None else j1
        found = []
        for j in range(j0, j1):
            n = self.parts(j)
            if found and found[-1][2] == n:
                found[-1] = (found[-1][0], j + 1, n)
            else:
                found.append((j, j + 1, n))
        return found


def _load_cache_rows(rows, cache, pairs, blocks):
    """rows[p, i, j] = cache[b, g, p L + j] for the positions [0, kv_len) of each (b, g) = pairs[i]."""
    _, kv_heads, max_seq, head_dim = cache.shape
    per, parts = blocks.per, blocks.parts_total
    full = blocks.kv_len // per
    for i, (b, g) in enumerate(pairs):
        base = (b * kv_heads + g) * max_seq * head_dim
        nisa.dma_copy(dst=rows[0:full, i, :, :],
                      src=cache.ap(pattern=[[per * head_dim, full], [1, per * head_dim]], offset=base))
        if full < parts:
            tail = blocks.kv_len - full * per
            nisa.dma_copy(dst=rows[full:full + 1, i, 0:tail, :],
                          src=cache.ap(pattern=[[tail * head_dim, 1], [1, tail * head_dim]],
                                       offset=base + full * per * head_dim))


def _keys_transposed(keys, i, rows, blocks, identity):
    """keys[:, i, 0:kv_len] = K^T in position order from the cache rows [parts, L, D]: each chunk transposed
    on the PE, then scattered to its columns p L + j on the way out of PSUM."""
    head_dim, pairs, width = keys.shape
    per = blocks.per
    span = max(1, (nl.tile_size.psum_fmax * 2) // blocks.parts_total)   # chunks per PSUM bank (bf16)
    for j0 in nl.static_range(0, per, span):
        count = min(span, per - j0)
        staged = nl.ndarray((head_dim, count, blocks.parts_total), dtype=rows.dtype, buffer=nl.psum)
        for j in nl.static_range(j0, j0 + count):
            n = blocks.parts(j)
            nisa.nc_matmul(dst=staged[:, j - j0, 0:n], stationary=rows[0:n, j, :], moving=identity[0:n, 0:n],
                           is_transpose=True)
        for a, z, n in blocks.groups(j0, j0 + count):
            nisa.tensor_copy(dst=keys.ap(pattern=[[pairs * width, head_dim], [1, z - a], [per, n]],
                                         offset=i * width + a),
                             src=staged[:, a - j0:z - j0, 0:n])


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
    for (c0, c1), engine in zip(_column_split(kv_len + 1, 2), (nisa.engine.scalar, nisa.engine.vector)):
        if engine == nisa.engine.scalar:
            nisa.activation(dst=s[:, c0:c1], op=nl.copy, data=scores[:, c0:c1])
        else:
            nisa.tensor_copy(dst=s[:, c0:c1], src=scores[:, c0:c1])
    nisa.tensor_scalar(dst=s, data=s, op0=nl.multiply, operand0=scale)
    # masked prior scores and the active score side by side in fp32, so one exp covers both
    masked = nl.ndarray((group, kv_len + 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=masked[:, kv_len:kv_len + 1], src=s[:, kv_len:kv_len + 1], engine=nisa.engine.gpsimd)
    top = nl.ndarray((group, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.range_select(dst=masked[:, 0:kv_len], on_true_tile=s[:, 0:kv_len], comp_op0=nl.less,
                      comp_op1=nl.greater_equal, bound0=position, bound1=0.0,
                      reduce_cmd=nisa.reduce_cmd.reset_reduce, reduce_res=top, reduce_op=nl.maximum)
    # -max(prior max, active)
    neg_top = nl.ndarray((group, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=neg_top, data=top, op0=nl.maximum, operand0=masked[:, kv_len:kv_len + 1],
                       op1=nl.multiply, operand1=-1.0)
    e = nl.ndarray((group, kv_len + 1), dtype=nl.float32, buffer=nl.sbuf)
    total = nl.ndarray((group, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation_reduce(dst=e, op=nl.exp, data=masked, reduce_op=nl.add, reduce_res=total, bias=neg_top)
    nisa.reciprocal(dst=total, data=total)
    p = nl.ndarray((group, kv_len + 1), dtype=dtype, buffer=nl.sbuf)
    engines = (nisa.engine.scalar, nisa.engine.vector, nisa.engine.gpsimd)
    for (c0, c1), engine in zip(_column_split(kv_len + 1, 3), engines):
        nisa.tensor_scalar(dst=p[:, c0:c1], data=e[:, c0:c1], op0=nl.multiply, operand0=total, engine=engine)
    return p


def _column_split(width, parts, least=256):
    """Column ranges splitting a long free axis between engines (one range when it is short)."""
    parts = max(1, min(parts, width // least))
    step = -(-width // parts)
    return [(c0, min(c0 + step, width)) for c0 in range(0, width, step)]


def _weighted_values(dst, p, values, v_row, blocks, identity):
    """dst [D, G] = (p_prior @ V_prior)^T + (p_active * v_new)^T, each product rounded before the sum."""
    group = p.shape[0]
    head_dim = values.shape[2]
    per, kv_len = blocks.per, blocks.kv_len
    # p^T chunks [parts, G] (chunk j: positions p L + j), and the active probabilities as a row [1, G]
    staged = nl.ndarray((blocks.parts_total, per + 1, group), dtype=p.dtype, buffer=nl.psum)
    for j in nl.static_range(per):
        n = blocks.parts(j)
        nisa.nc_matmul(dst=staged[0:n, j, :], stationary=p.ap(pattern=[[kv_len + 1, group], [per, n]], offset=j),
                       moving=identity[0:group, 0:group], is_transpose=True)
    nisa.nc_matmul(dst=staged[0:1, per, :], stationary=p[:, kv_len:kv_len + 1], moving=identity[0:group, 0:group],
                   is_transpose=True)
    p_t = nl.ndarray((blocks.parts_total, per + 1, group), dtype=p.dtype, buffer=nl.sbuf)
    for a, z, n in blocks.groups():
        nisa.activation(dst=p_t[0:n, a:z, :], op=nl.copy, data=staged[0:n, a:z, :])
    nisa.tensor_copy(dst=p_t[0:1, per, :], src=staged[0:1, per, :])
    acc = nl.ndarray((head_dim, 2, group), dtype=nl.float32, buffer=nl.psum)
    for j in nl.static_range(per):
        n = blocks.parts(j)
        nisa.nc_matmul(dst=acc[:, 0, :], stationary=values[0:n, j, :], moving=p_t[0:n, j, :])
    nisa.nc_matmul(dst=acc[:, 1, :], stationary=v_row, moving=p_t[0:1, per, :])
    prior = nl.ndarray((head_dim, group), dtype=p.dtype, buffer=nl.sbuf)
    nisa.activation(dst=prior, op=nl.copy, data=acc[:, 0, :])
    active = nl.ndarray((head_dim, group), dtype=p.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=active, src=acc[:, 1, :])
    nisa.tensor_tensor(dst=dst, data1=prior, data2=active, op=nl.add)


def _row_on_partition_0(column, identity, dtype):
    """A [N, 1] SBUF column as a [1, N] SBUF row (PE transpose)."""
    n = column.shape[0]
    staged = nl.ndarray((1, n), dtype=dtype, buffer=nl.psum)
    nisa.nc_matmul(dst=staged, stationary=column, moving=identity[0:n, 0:n], is_transpose=True)
    row = nl.ndarray((1, n), dtype=dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=row, src=staged)
    return row


def _write_cache_slot(cache, row, b, g, position):
    """cache[b, g, position] = row [1, D] (SBUF, one DMA queue); `position` is a 1x1 SBUF int32 (a dynamic
    offset)."""
    _, kv_heads, max_seq, head_dim = cache.shape
    nisa.dma_copy(dst=cache.ap(pattern=[[1, head_dim], [1, 1]], offset=(b * kv_heads + g) * max_seq * head_dim,
                               scalar_offset=position, indirect_dim=2), src=row)


def _load_out_weights(w, o_w, first, heads):
    """w[:, h, :] = o_proj^T rows of head h, columns [first, first + cols), for h in `heads` (a DMA each)."""
    head_dim, _, cols = w.shape
    hidden = o_w.shape[1]
    for h in heads:
        nisa.dma_copy(dst=w[:, h, :], src=o_w.ap(pattern=[[hidden, head_dim], [1, cols]],
                                                  offset=h * head_dim * hidden + first))


def _project_out(out, attn_t, w, first):
    """out[:, first + T p + t] = attn [B, Hq D] @ o_proj^T columns, for this core's T P columns."""
    head_dim, q_heads, batch = attn_t.shape
    cols = w.shape[2]
    tiles = cols // P
    hidden = out.shape[1]
    acc = nl.ndarray((P, tiles, batch), dtype=nl.float32, buffer=nl.psum)
    for h in nl.static_range(q_heads):
        for t in nl.static_range(tiles):
            nisa.nc_matmul(dst=acc[:, t, :], stationary=w[:, h, :].ap(pattern=[[q_heads * cols, head_dim],
                                                                                [tiles, P]],
                                                                       offset=h * cols + t),
                           moving=attn_t[:, h, :])
    out_sb = nl.ndarray((P, tiles, batch), dtype=out.dtype, buffer=nl.sbuf)
    nisa.activation(dst=out_sb, op=nl.copy, data=acc)
    nisa.dma_copy(dst=out.ap(pattern=[[tiles, P], [1, tiles], [hidden, batch]], offset=first), src=out_sb)


def _write_new_row(new, row, b, g):
    """new[b, g, 0] = row [1, D] (SBUF, one DMA queue; cast to new's dtype on the way)."""
    _, kv_heads, _, head_dim = new.shape
    nisa.dma_copy(dst=new.ap(pattern=[[head_dim, 1], [1, head_dim]], offset=(b * kv_heads + g) * head_dim), src=row)


@nki.jit
def decode_attention(x, q_w, k_w, v_w, o_w, q_norm, k_norm, cos, sin, positions, k_cache, v_cache,
                     kv_len, eps, scale, kv_tile, q_chunks, out_heads_early, out_heads_mid, cache_position):
    """x [B, H]; q_w [H, Hq*D], k_w and v_w [H, Hkv*D], o_w [Hq*D, H] (input dim first); q_norm and k_norm
    [D]; cos and sin [B, D]; positions [1, B] int32; k_cache and v_cache [B, Hkv, max_seq, D], read at
    [0, kv_len) and written at each row's position; scale = 1 / sqrt(D) -> out [B, H]. On a grid of 1 or 2
    program instances. Program order is streaming order (module docstring): the cache goes before (0),
    between (1) or after (2) the q and the k/v weights (`cache_position`); `out_heads_early` heads of
    o_proj^T stream before the partial-sum exchange and `out_heads_mid` more before the cache swap."""
    caches = (k_cache, v_cache)

    def write_cache(rows, positions_int):
        for which, row, b, g in rows:
            _write_cache_slot(caches[which], row, b, g, positions_int[0:1, b:b + 1])

    return _decode_attention(x, q_w, k_w, v_w, o_w, q_norm, k_norm, cos, sin, positions, k_cache, v_cache,
                             kv_len, eps, scale, kv_tile, q_chunks, out_heads_early, out_heads_mid, cache_position,
                             write_cache)


@nki.jit
def decode_attention_new_kv(x, q_w, k_w, v_w, o_w, q_norm, k_norm, cos, sin, positions, k_cache, v_cache,
                            kv_len, eps, scale, kv_tile, q_chunks, out_heads_early, out_heads_mid, cache_position):
    """decode_attention with the cache read only: -> (out [B, H], k_new, v_new [B, Hkv, 1, D] in the cache
    dtype: the new token's k after q/k norm and RoPE, and its v), for a caller whose KV-cache manager writes
    the cache (NxDI's). The same program, the new rows stored where decode_attention stores them."""
    batch, _ = x.shape
    _, kv_heads, _, head_dim = k_cache.shape
    new = (nl.ndarray((batch, kv_heads, 1, head_dim), dtype=k_cache.dtype, buffer=nl.shared_hbm),
           nl.ndarray((batch, kv_heads, 1, head_dim), dtype=v_cache.dtype, buffer=nl.shared_hbm))

    def write_new(rows, positions_int):
        for which, row, b, g in rows:
            _write_new_row(new[which], row, b, g)

    out = _decode_attention(x, q_w, k_w, v_w, o_w, q_norm, k_norm, cos, sin, positions, k_cache, v_cache,
                            kv_len, eps, scale, kv_tile, q_chunks, out_heads_early, out_heads_mid, cache_position,
                            write_new)
    return out, new[0], new[1]


def _decode_attention(x, q_w, k_w, v_w, o_w, q_norm, k_norm, cos, sin, positions, k_cache, v_cache,
                      kv_len, eps, scale, kv_tile, q_chunks, out_heads_early, out_heads_mid, cache_position,
                      store_rows):
    """The body both entries share; `store_rows([(0 for k, 1 for v, row [1, D], b, g)], positions int32 [1, B])`
    stores the new rows this core holds, at the point in program order where the cache slots are written."""
    batch, hidden = x.shape
    _, kv_heads, _, head_dim = k_cache.shape
    q_heads = q_w.shape[1] // head_dim
    group = q_heads // kv_heads
    heads = q_heads + kv_heads
    cores, core = nl.num_programs(0), nl.program_id(0)
    cols = hidden // cores
    identity = nl.shared_identity_matrix(n=P, dtype=x.dtype)
    out = nl.ndarray((batch, hidden), dtype=x.dtype, buffer=nl.shared_hbm)

    x_rows = _x_rows(x)
    tables = [_RopeTables(q_norm, k_norm, cos, sin, q_heads, kv_heads, b0, rows)
              for b0, rows in _row_chunks(batch, P // heads)]
    pos_int, pos_float = _load_positions(positions, group)
    blocks = _Blocks(kv_len, kv_tile)
    pairs = [(b, g) for b in range(batch) for g in range(kv_heads)]
    projection = _Projection(x_rows, q_w, k_w, v_w, head_dim, core, cores, identity)
    # K^T of every (row, KV head) [D, pairs, P L] and the V rows [P, pairs, L, D] (positions beyond kv_len
    # unused): tiles of one shape when D = P, so that core 0 can swap its K^T for core 1's V rows
    keys = nl.ndarray((head_dim, len(pairs), P * blocks.per), dtype=k_cache.dtype, buffer=nl.sbuf)
    v_rows = nl.ndarray((P, len(pairs), blocks.per, head_dim), dtype=v_cache.dtype, buffer=nl.sbuf)
    k_rows = nl.ndarray(v_rows.shape, dtype=k_cache.dtype, buffer=nl.sbuf) if core == 0 else None

    def load_cache():
        if core == 0:
            _load_cache_rows(k_rows, k_cache, pairs, blocks)
        if core == cores - 1:
            _load_cache_rows(v_rows, v_cache, pairs, blocks)

    def transpose_keys():
        if core == 0:
            for i in range(len(pairs)):
                _keys_transposed(keys, i, k_rows[:, i, :, :], blocks, identity)

    if cache_position == 0:
        load_cache()
        transpose_keys()            # the cache lands first: the PE transposes it before the weights land
    projection.load_q_weights(q_chunks)
    if cache_position == 1:
        load_cache()
    projection.load_kv_weights()
    if cache_position == 2:
        load_cache()
    acc = projection.project()
    if cache_position > 0:
        transpose_keys()
    w_out = nl.ndarray((head_dim, q_heads, cols), dtype=o_w.dtype, buffer=nl.sbuf)
    early = min(out_heads_early, q_heads)
    _load_out_weights(w_out, o_w, core * cols, range(early))   # streams while the exchanges get ready
    qkv = _complete_qkv(acc, _partial_sbuf(acc), core, cores, x.dtype)
    later = min(q_heads, early + out_heads_mid)
    _load_out_weights(w_out, o_w, core * cols, range(early, later))
    if cores > 1:   # core 0 read the K cache and transposed it, core 1 read the V cache: swap
        mine, theirs = (keys, v_rows) if core == 0 else (v_rows, keys)
        nisa.sendrecv(src=mine, dst=theirs, send_to_rank=1 - core, recv_from_rank=1 - core, pipe_id=1)
    _load_out_weights(w_out, o_w, core * cols, range(later, q_heads))
    _norm_rope(qkv, tables, identity, q_heads, kv_heads, eps)

    attn_t = nl.ndarray((head_dim, q_heads, batch), dtype=x.dtype, buffer=nl.sbuf)
    slots = []
    for i, (b, g) in enumerate(pairs):
        q_t = qkv[:, g * group:(g + 1) * group, b]
        k_new = qkv[:, q_heads + g, b:b + 1]
        v_row = _row_on_partition_0(qkv[:, q_heads + kv_heads + g, b:b + 1], identity, x.dtype)
        p = _softmax(_scores(q_t, keys[:, i, 0:kv_len], k_new, kv_len), pos_float[:, b:b + 1], kv_len, scale,
                     x.dtype)
        _weighted_values(attn_t[:, g * group:(g + 1) * group, b], p, v_rows[:, i, :, :], v_row, blocks, identity)
        if core == 0:
            slots.append((0, _row_on_partition_0(k_new, identity, x.dtype), b, g))
        if core == cores - 1:
            slots.append((1, v_row, b, g))
    store_rows(slots, pos_int)
    _project_out(out, attn_t, w_out, core * cols)
    return out

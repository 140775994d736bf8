"""grouped_v2: the whole decode expert block in one kernel, on both physical cores of the logical core.

Work split (SPMD grid of `nl.num_programs()` instances, one per physical core): the T * k (token, slot)
pairs of consecutive slots (2j, 2j + 1), always the same token since k is even, are dealt out in contiguous
ranges, so each core streams the weights of half the selected experts. Every expert is computed whole on
one core, with the baseline's roundings; only the sum over a token's k experts (fp32, rounded once) can
need both cores: the first core writes its scaled expert outputs of such tokens to shared HBM, and after a
core barrier the last core sums all k of them in one `dma_compute` (fp32 adds, one rounding to the output
dtype) straight into the output. Tokens whose experts all sit on one core are summed the same way there,
before the barrier. At batch 1 every expert output of the first core crosses over, which costs one DMA
latency after its last weight byte (the cost model's critical path for trn3).

Pair layout (P = 128 partitions, H = hidden, I = intermediate per rank, r = I / 64, expert A = slot 2j,
B = slot 2j + 1):
- gate/up weights load as [P, 2, kn, 2I] (h = p * H/P + k on partitions, one contiguous run per partition
  per expert). A matmul's stationary takes 64 columns of A and the same 64 of B (columns j * r + c of gate
  or up, chunk c), so the pair's gate/up values land as [P, 2r] with A's intermediate index p * r + c on
  partitions 0..63 and B's (p - 64) * r + c on 64..127, the moving operand being the token's x column.
  Every pair but a core's last uses the wide layout instead (`gate_up_pair`): each expert's rows on half the
  partitions, one run of twice the bytes, half the DMA descriptors, twice the matmuls (TensorE has time
  for them except at the end of the stream);
- h = silu(gate) * up goes into a block-diagonal [P, r, 2] tile (A's rows in column 0, B's in column 1,
  zeros elsewhere);
- down weights load as [P, cn, H], A's rows p * r + c on partitions 0..63 and B's on 64..127, so each
  expert's rows are one contiguous run per partition and the pair covers all 16 DMA queues. A matmul with
  stationary = columns p' * H/P + m of these rows and moving = the block-diagonal h gives A's and B's
  outputs side by side; out column h = p' * H/P + m lands on partition p', so every output DMA writes one
  contiguous run per partition.
Accumulation groups: each (output group, load) is written by consecutive matmuls; the loads' fp32 partials
are added on VectorE while rounding (gate/up and the expert output, as the baseline rounds them).

Weights stream through rings of SBUF buffers (`gate_up_bufs` loads of gate/up, `down_bufs` of down), in the
order they are used: each pair's gate/up one pair ahead of the previous pair's down, so h is ready before
its down weights arrive; every load is issued as soon as its buffer is free (all of them at once when they
fit), and the last down load of each core is cut to `last_chunks` chunks so little matmul work waits for
the final bytes.
"""
import nki
import nki.isa as nisa
import nki.language as nl

from kernels.experts.nki_expert_mlp import load_expert_ids, spans

HALF = 64  # partitions per expert of a pair in the down layout (and columns per expert in a gate/up matmul)


def down_spans(chunks, per_load, last_chunks):
    """Chunk spans of one pair's down loads; with 0 < last_chunks < chunks the final load is last_chunks."""
    if 0 < last_chunks < chunks:
        return spans(chunks - last_chunks, per_load) + [(chunks - last_chunks, last_chunks)]
    return spans(chunks, per_load)


def pair_range(core, cores, pairs):
    """(first pair, count) of a core: contiguous ranges, earlier cores take the remainder."""
    base, extra = pairs // cores, pairs % cores
    first = core * base + min(core, extra)
    return first, base + (1 if core < extra else 0)


def core_of(pair, cores, pairs):
    for core in range(cores):
        first, count = pair_range(core, cores, pairs)
        if first <= pair < first + count:
            return core
    return cores - 1


class PairStream(nl.NKIObject):
    """This core's weight loads, in use order: gate/up of pair q + 1 before down of pair q (the first `wide`
    pairs' gate/up in the wide layout). Each load of a kind goes to the next buffer of its ring; `take(i)`
    issues every load up to the first whose buffer is still in use (in order, so DMA queues see them in use
    order) and returns load i's buffer."""

    def __init__(self, gate_up, down, ids, first_pair, count, k_tiles_per_load, chunks_per_load, last_chunks,
                 gate_up_bufs, down_bufs, wide_pairs):
        _, hidden, width = gate_up.shape
        pmax = nl.tile_size.pmax
        self.gate_up, self.down, self.ids = gate_up, down, ids
        self.k_tiles = hidden // pmax
        self.steps = hidden // HALF  # 64-row contraction steps of a wide pair
        self.chunks = width // 2 // HALF
        self.per_partition = 2 * k_tiles_per_load * width  # elements per partition of a gate/up buffer
        self.wide = min(wide_pairs, count - 1) if count > 1 else 0  # the first `wide` pairs use the wide layout
        self.loads = []  # (kind, local pair, first, size, ring slot, ordinal of its kind)
        order = []
        for q in range(count):
            order.append(("gate_up", q))
            if q > 0:
                order.append(("down", q - 1))
        if count > 0:
            order.append(("down", count - 1))
        used = {"gate_up": 0, "down": 0}
        bufs = {"gate_up": gate_up_bufs, "down": down_bufs}
        self.first_load = {}
        for kind, q in order:
            if kind == "gate_up" and q < self.wide:
                pieces = spans(self.steps, 2 * k_tiles_per_load)
            elif kind == "gate_up":
                pieces = spans(self.k_tiles, k_tiles_per_load)
            else:
                pieces = down_spans(self.chunks, chunks_per_load, last_chunks if q == count - 1 else 0)
            self.first_load[(kind, q)] = len(self.loads)
            for first, size in pieces:
                self.loads.append((kind, q, first, size, used[kind] % bufs[kind], used[kind]))
                used[kind] += 1
        self.bufs = bufs
        self.first_pair = first_pair
        self.gate_up_ring = []
        self.down_ring = []
        for _ in range(gate_up_bufs):
            self.gate_up_ring.append(nl.ndarray((pmax, 2, k_tiles_per_load, width), dtype=gate_up.dtype,
                                                buffer=nl.sbuf))
        for _ in range(down_bufs):
            self.down_ring.append(nl.ndarray((pmax, chunks_per_load, hidden), dtype=down.dtype, buffer=nl.sbuf))
        self.issued = 0
        self.consumed = {"gate_up": 0, "down": 0}  # loads of each kind whose matmuls are issued

    def pieces(self, kind, q):
        """(load index, first, size) of pair q's loads of one kind."""
        out = []
        start = self.first_load[(kind, q)]
        for i in range(start, len(self.loads)):
            load_kind, load_q, first, size, _, _ = self.loads[i]
            if load_kind != kind or load_q != q:
                break
            out.append((i, first, size))
        return out

    def _issue(self, i):
        kind, q, first, size, slot, _ = self.loads[i]
        pair = self.first_pair + q
        for e in range(2):
            expert = self.ids[0:1, 2 * pair + e:2 * pair + e + 1]
            if kind == "gate_up" and q < self.wide:  # rows p * H/64 + k on partition 64 e + p: one run each
                width = self.gate_up.shape[2]
                src = self.gate_up.ap(pattern=[[self.steps * width, HALF], [1, size * width]], offset=first * width,
                                      scalar_offset=expert, indirect_dim=0)
                dst = self.gate_up_ring[slot].ap(pattern=[[self.per_partition, HALF], [1, size * width]],
                                                 offset=e * HALF * self.per_partition)
                nisa.dma_copy(dst=dst, src=src)
            elif kind == "gate_up":
                width = self.gate_up.shape[2]
                src = self.gate_up.ap(pattern=[[self.k_tiles * width, nl.tile_size.pmax], [1, size * width]],
                                      offset=first * width, scalar_offset=expert, indirect_dim=0)
                nisa.dma_copy(dst=self.gate_up_ring[slot][:, e, 0:size, :], src=src)
            else:
                hidden = self.down.shape[2]
                src = self.down.ap(pattern=[[self.chunks * hidden, HALF], [1, size * hidden]], offset=first * hidden,
                                   scalar_offset=expert, indirect_dim=0)
                nisa.dma_copy(dst=self.down_ring[slot][e * HALF:(e + 1) * HALF, 0:size, :], src=src)

    def take(self, i):
        """Load i's buffer, after issuing every load whose buffer is free, in order."""
        while self.issued < len(self.loads):
            kind, _, _, _, _, ordinal = self.loads[self.issued]
            if ordinal >= self.consumed[kind] + self.bufs[kind]:
                break  # its buffer still holds a load whose matmuls are not issued yet
            self._issue(self.issued)
            self.issued += 1
        kind, _, _, _, slot, _ = self.loads[i]
        return self.gate_up_ring[slot] if kind == "gate_up" else self.down_ring[slot]

    def done(self, i):
        kind = self.loads[i][0]
        self.consumed[kind] += 1


def gate_up_pair(stream, x_t, x_wide, token, q, dtype, fp32_swiglu):
    """Pair q's gate/up on the token -> block-diagonal h [P, r, 2] (A's rows p * r + c on partitions 0..63 in
    column 0, B's on 64..127 in column 1, zeros elsewhere).

    Normal layout: both experts' rows h = p * H/P + k on partition p, side by side; a matmul takes 64 columns
    of A and the same 64 of B as stationary and the token's x column as moving, so A's values land on
    partitions 0..63 and B's on 64..127. Wide layout (one contiguous run of twice the bytes per partition,
    half the DMA descriptors): A's rows p * H/64 + k on partitions 0..63, B's on 64..127; the moving operand
    is block-diagonal x (A's rows in column 0, B's in column 1), so [m, e] is expert e's value of stationary
    column m; the stationary repeats the same 64 columns twice, so A's values on 0..63 and B's on 64..127 are
    where the down layout wants them (and the others are not used: twice the matmuls, on an idle TensorE)."""
    pmax = nl.tile_size.pmax
    chunks = stream.chunks
    width = stream.gate_up.shape[2]
    wide = q < stream.wide
    pieces = stream.pieces("gate_up", q)
    columns = 2 if wide else 1
    partials = nl.ndarray((pmax, 2 * chunks, columns, len(pieces)), dtype=nl.float32, buffer=nl.psum)
    for load in range(len(pieces)):
        i, first, size = pieces[load]
        weights = stream.take(i)
        per_expert = stream.per_partition // 2
        for group in range(2 * chunks):
            column = (group // chunks) * (width // 2) + group % chunks
            for k in range(size):
                if wide:
                    stationary = weights.ap(pattern=[[stream.per_partition, pmax], [0, 2], [chunks, HALF]],
                                            offset=k * width + column)
                    moving = x_wide[0:pmax, token, first + k, 0:2]
                else:
                    stationary = weights.ap(pattern=[[stream.per_partition, pmax], [per_expert, 2], [chunks, HALF]],
                                            offset=k * width + column)
                    moving = x_t[0:pmax, token, first + k:first + k + 1]
                nisa.nc_matmul(dst=partials[0:pmax, group, 0:columns, load], stationary=stationary, moving=moving)
        stream.done(i)
    inner = nl.float32 if fp32_swiglu else dtype  # fp32: gate, up and silu unrounded, one rounding at h
    gate_up = nl.ndarray((pmax, 2 * chunks, columns), dtype=inner, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=gate_up, op=nl.add, data=partials, axis=3)
    act = nl.ndarray((pmax, chunks, columns), dtype=inner, buffer=nl.sbuf)
    nisa.activation(dst=act, op=nl.silu, data=gate_up[0:pmax, 0:chunks, :])
    h_t = nl.ndarray((pmax, chunks, 2), dtype=dtype, buffer=nl.sbuf)
    nisa.memset(dst=h_t, value=0.0, engine=nisa.engine.gpsimd)
    for e in range(2):
        rows = slice(e * HALF, (e + 1) * HALF)
        mine = e if wide else 0
        nisa.tensor_tensor(dst=h_t[rows, :, e], data1=act[rows, :, mine],
                           data2=gate_up[rows, chunks:2 * chunks, mine], op=nl.multiply)
    return h_t


def down_pair(stream, h_t, q, blocks):
    """Pair q's down projection: fp32 partials [P, 2, H/P, loads], column h = p * H/P + m at [p, e, m]."""
    pmax = nl.tile_size.pmax
    hidden = stream.down.shape[2]
    pieces = stream.pieces("down", q)
    partials = nl.ndarray((pmax, 2, blocks, len(pieces)), dtype=nl.float32, buffer=nl.psum)
    for load in range(len(pieces)):
        i, first, size = pieces[load]
        weights = stream.take(i)
        per_partition = weights.shape[1] * hidden
        for m in range(blocks):
            for c in range(size):
                stationary = weights.ap(pattern=[[per_partition, pmax], [blocks, pmax]], offset=c * hidden + m)
                nisa.nc_matmul(dst=partials[0:pmax, 0:2, m, load], stationary=stationary,
                               moving=h_t[0:pmax, first + c, 0:2])
        stream.done(i)
    return partials


def load_wide_tokens(x):
    """x [T, H] -> block-diagonal [P, T, H/64, 2]: x[t, p * H/64 + k] at [p, t, k, 0] for p < 64 and at
    [p, t, k, 1] for the same row on partition 64 + p, zeros elsewhere (the moving operand of wide pairs)."""
    tokens, hidden = x.shape
    pmax = nl.tile_size.pmax
    steps = hidden // HALF
    both = nl.ndarray((pmax, tokens, steps), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=both, src=x.ap(pattern=[[0, 2], [steps, HALF], [hidden, tokens], [1, steps]], offset=0))
    wide = nl.ndarray((pmax, tokens, steps, 2), dtype=x.dtype, buffer=nl.sbuf)
    nisa.memset(dst=wide, value=0.0, engine=nisa.engine.gpsimd)
    for e in range(2):
        rows = slice(e * HALF, (e + 1) * HALF)
        nisa.tensor_copy(dst=wide[rows, :, :, e], src=both[rows, :, :])
    return wide


@nki.jit
def grouped_v2(x, affinities, index, gate_up, down, k_tiles_per_load, chunks_per_load, last_chunks, gate_up_bufs,
               down_bufs, wide_pairs, fp32_swiglu, fp32_affinity):
    """x [T, H], affinities [T, k], index [T, k] int32, gate_up [E, H, 2I], down [E, I, H]
    -> this rank's partial MoE output [T, H]. Launch as grouped_v2[cores]."""
    tokens, hidden = x.shape
    top_k = index.shape[1]
    pmax = nl.tile_size.pmax
    blocks = hidden // pmax
    k_tiles = hidden // pmax
    slots = tokens * top_k
    pairs = slots // 2
    per_token = top_k // 2
    cores = nl.num_programs(0)
    core = nl.program_id(0)
    out = nl.ndarray((tokens, hidden), dtype=x.dtype, buffer=nl.shared_hbm)
    shared = False  # some token's experts span several cores
    for token in range(tokens):
        shared = shared or core_of(token * per_token, cores, pairs) != core_of((token + 1) * per_token - 1, cores,
                                                                               pairs)
    sent = None
    if shared:  # scaled expert outputs for the core that sums their token
        sent = nl.ndarray((pairs, pmax, 2 * blocks), dtype=x.dtype, buffer=nl.shared_hbm)

    ids = load_expert_ids(index)  # first: every weight load waits for it
    x_t = nl.ndarray((pmax, tokens, k_tiles), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=x_t, src=x.ap(pattern=[[k_tiles, pmax], [hidden, tokens], [1, k_tiles]], offset=0))
    scales = nl.ndarray((pmax, slots), dtype=affinities.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=scales, src=affinities.ap(pattern=[[0, pmax], [1, slots]], offset=0))

    first_pair, count = pair_range(core, cores, pairs)
    stream = PairStream(gate_up, down, ids, first_pair, count, min(k_tiles_per_load, k_tiles),
                        min(chunks_per_load, stream_chunks(gate_up)), last_chunks, gate_up_bufs, down_bufs,
                        wide_pairs)
    x_wide = load_wide_tokens(x) if stream.wide > 0 else None
    scaled = []
    previous = None  # h of the pair whose down projection comes next
    for q in range(count):
        token = (first_pair + q) // per_token
        h_t = gate_up_pair(stream, x_t, x_wide, token, q, x.dtype, fp32_swiglu)
        if q > 0:
            scaled.append(finish_pair(stream, previous, q - 1, scales, blocks, x.dtype, fp32_affinity))
        previous = h_t
    if count > 0:
        scaled.append(finish_pair(stream, previous, count - 1, scales, blocks, x.dtype, fp32_affinity))

    # The sum over each token's k experts, by the core holding the token's last pair: first the tokens whose
    # experts are all here; tokens with experts on several cores after the others' outputs arrive.
    for q in range(count):
        pair = first_pair + q
        if writer_of(pair // per_token, per_token, cores, pairs) != core:
            nisa.dma_copy(dst=sent[pair], src=scaled[q])
    for local in (True, False):
        if not local and shared:
            nisa.core_barrier(sent, tuple(range(cores)))
        for token in range(tokens):
            first, last = token * per_token, (token + 1) * per_token - 1
            if writer_of(token, per_token, cores, pairs) != core or (core_of(first, cores, pairs) == core) != local:
                continue
            sources = []
            for pair in range(first, last + 1):
                for e in range(2):
                    if first_pair <= pair < first_pair + count:
                        sources.append(scaled[pair - first_pair][0:pmax, e, 0:blocks])
                    else:
                        sources.append(sent.ap(pattern=[[2 * blocks, pmax], [1, blocks]],
                                               offset=(pair * pmax) * 2 * blocks + e * blocks))
            nisa.dma_compute(dst=out.ap(pattern=[[blocks, pmax], [1, blocks]], offset=token * hidden), srcs=sources,
                             reduce_op=nl.add)
    return out


def writer_of(token, per_token, cores, pairs):
    """The core that sums a token's expert outputs: the one holding its last pair."""
    return core_of((token + 1) * per_token - 1, cores, pairs)


def stream_chunks(gate_up):
    return gate_up.shape[2] // 2 // HALF


def finish_pair(stream, h_t, q, scales, blocks, dtype, fp32_affinity):
    """Pair q's expert outputs, rounded, times their affinities (rounded): [P, 2, H/P]. fp32_affinity: the
    fp32 down output times the affinity, rounded once."""
    pmax = nl.tile_size.pmax
    slots = scales.shape[1]
    pair = stream.first_pair + q
    inner = nl.float32 if fp32_affinity else dtype
    factors = nl.ndarray((pmax, 2, blocks), dtype=inner, buffer=nl.sbuf)
    nisa.tensor_copy(dst=factors, src=scales.ap(pattern=[[slots, pmax], [1, 2], [0, blocks]], offset=2 * pair),
                     engine=nisa.engine.gpsimd)
    partials = down_pair(stream, h_t, q, blocks)
    outputs = nl.ndarray((pmax, 2, blocks), dtype=inner, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=outputs, op=nl.add, data=partials, axis=3)
    scaled = nl.ndarray((pmax, 2, blocks), dtype=dtype, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=scaled, data1=outputs, data2=factors, op=nl.multiply)
    return scaled

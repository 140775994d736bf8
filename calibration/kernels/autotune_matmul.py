"""Calibration kernels: nine published Trn2 matmul kernels of awslabs/nki-autotune, rewritten.

nki-autotune's `kernel_library` (Apache-2.0) publishes bf16 2048x2048x2048 matmul kernels with their
measured MFU on one Trn2 NeuronCore (`../shared/data/calibration/nki_autotune_matmul_trn2.csv`). The
kernels below are our own code, not copies: each issues the same instruction stream as the published
kernel named in its docstring (the same nisa calls with the same operand shapes, dtypes, buffers and
views, in the same program order, touching the same buffers), so the interpreter's trace and the cost
model's estimate of ours equal those of the original. Buffer identity is what the cost model sees
(dependencies are per allocation), so where an original rotates over at least as many multi-buffer
slots as it has iterations (every iteration gets its own slot) we allocate a fresh buffer per
iteration, and slots an original allocates but never touches are not allocated: same stream, less
SBUF (the two best originals exceed the interpreter's SBUF capacity as written).

Two families, built from the helpers below:
- *blocked* (90.92, 89.26, 80.45, 79.05): K in 1024-deep blocks; each block's partial product leaves
  PSUM through an SBUF scratch (`tensor_copy`) and is added into an SBUF accumulator (`tensor_tensor`).
- *resident* (61.73, 60.57, 60.21, 58.60, and the double matmul): whole operands loaded into SBUF up
  front, one PSUM tile reused for every output tile with all of K accumulated in it, outputs stored
  at the end. The first matmuls wait behind most of the loads (issued before them), and every output
  tile waits for the previous one's PSUM drain: the likely reasons for their ~60% MFU.

Shapes: block sizes are fixed as in the originals; sizes are read from the inputs (the published
points are all 2048), which lets tests run the same instruction patterns at smaller sizes.
"""

import nki
import nki.isa as nisa
import nki.language as nl

P = 128            # partitions: contraction tile and output-row tile
N_TILE = 512       # TensorE moving free size: one 2 KiB PSUM bank of fp32


def sbuf_grid(rows: int, cols: int, shape: tuple, dtype=nl.bfloat16) -> list:
    """rows x cols separate SBUF tiles (separate allocations)."""
    return [[nl.ndarray(shape, dtype=dtype, buffer=nl.sbuf) for _ in range(cols)] for _ in range(rows)]


def psum_tile(shape: tuple = (P, N_TILE), dtype=nl.float32):
    return nl.ndarray(shape, dtype=dtype, buffer=nl.psum)


def load_grid(grid: list, src, transpose: bool = False) -> None:
    """One DMA per tile, row by row: tile [r][c] of shape (p, f) gets src[r*p:(r+1)*p, c*f:(c+1)*f]
    (`dma_copy`) or, with `transpose`, the transpose of src[c*f:(c+1)*f, r*p:(r+1)*p] (`dma_transpose`)."""
    for r, row in enumerate(grid):
        for c, tile in enumerate(row):
            p, f = tile.shape
            if transpose:
                nisa.dma_transpose(tile, src[c * f:(c + 1) * f, r * p:(r + 1) * p])
            else:
                nisa.dma_copy(tile, src[r * p:(r + 1) * p, c * f:(c + 1) * f])


def store_grid(dst, grid: list, staged: bool = False) -> None:
    """One `dma_copy` per tile, row by row, into dst[r*p:(r+1)*p, c*f:(c+1)*f]. `staged` first copies
    each tile into a fresh SBUF tile (`tensor_copy`) and stores that copy."""
    for r, row in enumerate(grid):
        for c, tile in enumerate(row):
            p, f = tile.shape
            if staged:
                copy = nl.ndarray((p, f), dtype=tile.dtype, buffer=nl.sbuf)
                nisa.tensor_copy(copy, tile)
                tile = copy
            nisa.dma_copy(dst[r * p:(r + 1) * p, c * f:(c + 1) * f], tile)


def zero_grid(grid: list) -> None:
    for row in grid:
        for tile in row:
            nisa.memset(tile, 0.0)


def k_chain(psum, stationary: list, moving: list) -> None:
    """Accumulate sum_k stationary[k]^T @ moving[k] into `psum` (one `nc_matmul` per K tile)."""
    for s, m in zip(stationary, moving):
        nisa.nc_matmul(dst=psum, stationary=s, moving=m)


def psum_to_tile(out_tile, psum, stationary: list, moving: list) -> None:
    """Zero `psum`, accumulate the K chain into it, copy it to `out_tile` (resident family)."""
    nisa.memset(psum, 0.0)
    k_chain(psum, stationary, moving)
    nisa.tensor_copy(out_tile, psum)


def _psum_and_scratch(width: int, dtype) -> tuple:
    return psum_tile((P, width)), nl.ndarray((P, width), dtype=dtype, buffer=nl.sbuf)


def sbuf_accumulate(acc: list, lhsT: list, rhs: list, psum_per_tile: bool) -> None:
    """Blocked family: for each output tile acc[m][0] (P, n), the K block's product of the column
    grids lhsT[k][0] (P, len(acc)*P, output rows packed along the free axis) and rhs[k][0] (P, n)
    goes memset -> K chain in PSUM -> `tensor_copy` to an SBUF scratch -> `tensor_tensor` add into
    acc. `psum_per_tile` allocates a fresh PSUM tile and scratch per output tile, so the next tile's
    matmuls need not wait for this tile's drain; otherwise one pair serves the whole call and every
    tile waits (write-after-read) for the previous tile's copy."""
    width, dtype = acc[0][0].shape[1], acc[0][0].dtype
    shared = None if psum_per_tile else _psum_and_scratch(width, dtype)
    for m, (acc_tile,) in enumerate(acc):
        psum, scratch = shared or _psum_and_scratch(width, dtype)
        nisa.memset(psum, 0.0)
        k_chain(psum, [t[0:P, m * P:(m + 1) * P] for (t,) in lhsT], [t for (t,) in rhs])
        nisa.tensor_copy(scratch, psum)
        nisa.tensor_tensor(acc_tile, acc_tile, scratch, op=nl.add)


def _blocked_lhsT_rhs(lhs_T, rhs, psum_per_tile: bool, staged_store: bool):
    """Loop order N block (512) > K block (1024) > M block (512): the N block's accumulator column
    (every output row, 512 wide) is zeroed, the K block of rhs loaded once and reused by four M
    blocks, each loading its lhsT K x M block with 128-row `dma_copy`s (no transposes: the input is
    already K-major); the column is stored after the last K block. Every block gets its own buffer."""
    K, M = lhs_T.shape
    N = rhs.shape[1]
    BK, BM, BN = 1024, 512, N_TILE
    out = nl.ndarray((M, N), dtype=nl.bfloat16, buffer=nl.shared_hbm)
    for n in range(N // BN):
        acc = sbuf_grid(M // P, 1, (P, BN))
        zero_grid(acc)
        for k in range(K // BK):
            rhs_block = sbuf_grid(BK // P, 1, (P, BN))
            load_grid(rhs_block, rhs[k * BK:(k + 1) * BK, n * BN:(n + 1) * BN])
            for m in range(M // BM):
                lhsT_block = sbuf_grid(BK // P, 1, (P, BM))
                load_grid(lhsT_block, lhs_T[k * BK:(k + 1) * BK, m * BM:(m + 1) * BM])
                sbuf_accumulate(acc[m * (BM // P):(m + 1) * (BM // P)], lhsT_block, rhs_block, psum_per_tile)
        store_grid(out[0:M, n * BN:(n + 1) * BN], acc, staged=staged_store)
    return out


def _resident(lhs_src, rhs_src, lhs_transposed: bool, rhs_transposed: bool, rhs_first: bool,
              m_block: int | None = None):
    """Resident family. lhs_src is lhs [M, K] (`lhs_transposed`: loaded with 128x128 `dma_transpose`s)
    or lhs_T [K, M] (128x128 `dma_copy`s); rhs_src is rhs_T [N, K] (`rhs_transposed`: 512x128
    `dma_transpose`s) or rhs [K, N] (128x512 `dma_copy`s). Loads go lhsT then rhs unless `rhs_first`.
    lhsT is held `m_block` output rows at a time in one buffer reloaded per block (default: all of M).
    Then output tiles m-major, n-minor, each the full K chain in one reused PSUM tile, and the
    whole output is stored at the end."""
    M, K = lhs_src.shape if lhs_transposed else (lhs_src.shape[1], lhs_src.shape[0])
    N = rhs_src.shape[0] if rhs_transposed else rhs_src.shape[1]
    m_block = m_block or M
    out = nl.ndarray((M, N), dtype=nl.bfloat16, buffer=nl.shared_hbm)
    lhsT = sbuf_grid(K // P, m_block // P, (P, P))
    rhs = sbuf_grid(K // P, N // N_TILE, (P, N_TILE))
    acc = sbuf_grid(M // P, N // N_TILE, (P, N_TILE))
    psum = psum_tile()
    if rhs_first:
        load_grid(rhs, rhs_src, transpose=rhs_transposed)
    for b in range(M // m_block):
        rows = slice(b * m_block, (b + 1) * m_block)
        load_grid(lhsT, lhs_src[rows, 0:K] if lhs_transposed else lhs_src[0:K, rows], transpose=lhs_transposed)
        if not rhs_first and b == 0:
            load_grid(rhs, rhs_src, transpose=rhs_transposed)
        for m in range(m_block // P):
            for n in range(N // N_TILE):
                psum_to_tile(acc[b * (m_block // P) + m][n], psum, [row[m] for row in lhsT], [row[n] for row in rhs])
    store_grid(out, acc)
    return out


@nki.jit
def lhsT_rhs_hand_9092(lhs_T, rhs):
    """kernel_library/matmul/lhsT_rhs/kernel_hand_90.92mfu.py (90.92% MFU). The blocked lhsT @ rhs
    schedule with a fresh PSUM tile and SBUF scratch per 128x512 output tile: consecutive tiles' K
    chains use different PSUM banks, so TensorE runs the next chain while VectorE drains and adds
    the previous one. The original's 4-slot output and 2x4-slot lhsT rotations (lhsT re-allocated per
    N block) give every block its own buffer, as here. Its stream equals `lhsT_rhs_manual_ir_8045`'s
    but for the PSUM tile and scratch per output tile instead of per block: of what a trace shows,
    that is all that separates 90.92 from 80.45 (the originals also allocate their SBUF blocks at
    different loop levels, which a compiler may place differently; the trace cannot show it)."""
    return _blocked_lhsT_rhs(lhs_T, rhs, psum_per_tile=True, staged_store=False)


@nki.jit
def lhsT_rhs_manual_ir_8045(lhs_T, rhs):
    """kernel_from_manual_ir_80.45mfu.py (80.45% MFU, nki-autotune 0b6f309^). The blocked lhsT @ rhs
    schedule with one PSUM tile and one SBUF scratch per (N, K, M) block, reused by its four output
    tiles: each tile's memset and matmuls wait for the previous tile's PSUM drain (write after read),
    serialising TensorE behind VectorE within a block."""
    return _blocked_lhsT_rhs(lhs_T, rhs, psum_per_tile=False, staged_store=False)


@nki.jit
def lhsT_rhs_manual_7905(lhs_T, rhs):
    """kernel_manual_79.05mfu.py (79.05% MFU, nki-autotune 0b6f309^). As `lhsT_rhs_manual_ir_8045`
    (one PSUM tile per block), plus a staging `tensor_copy` of every accumulator tile into a fresh
    SBUF tile before its store: 64 more VectorE copies on the tail of each N block."""
    return _blocked_lhsT_rhs(lhs_T, rhs, psum_per_tile=False, staged_store=True)


@nki.jit
def lhs_rhs_handtuned_8926(lhs, rhs):
    """kernel_library/matmul/lhs_rhs/kernel_handtuned_89.26mfu.py (89.26% MFU). lhs [M, K] is
    transposed by the DMA engines: loop order M block (1024) > N block (512) > K block (1024); each
    (K, M) block of lhs^T has its own persistent buffer and is re-transposed (8 `dma_transpose`s of
    1024x128) for every N block; rhs K blocks are fresh per N block. The accumulator (M block rows x
    all of N) is fresh per M block and each N block works on a 512-wide view of it, stored as soon
    as its K blocks are done. PSUM tile and scratch per output tile, as in the 90.92 kernel. The
    original allocates 4x4 lhsT slots and 8 rhs slots of which 2x2 and 2 are used."""
    M, K = lhs.shape
    N = rhs.shape[1]
    BM, BK, BN = 1024, 1024, N_TILE
    out = nl.ndarray((M, N), dtype=nl.bfloat16, buffer=nl.shared_hbm)
    lhsT_blocks = [[sbuf_grid(BK // P, 1, (P, BM)) for _ in range(M // BM)] for _ in range(K // BK)]
    for m in range(M // BM):
        acc = sbuf_grid(BM // P, 1, (P, N))
        zero_grid(acc)
        for n in range(N // BN):
            acc_view = [[tile[0:P, n * BN:(n + 1) * BN]] for (tile,) in acc]
            rhs_blocks = [sbuf_grid(BK // P, 1, (P, BN)) for _ in range(K // BK)]
            for k in range(K // BK):
                load_grid(lhsT_blocks[k][m], lhs[m * BM:(m + 1) * BM, k * BK:(k + 1) * BK], transpose=True)
                load_grid(rhs_blocks[k], rhs[k * BK:(k + 1) * BK, n * BN:(n + 1) * BN])
                sbuf_accumulate(acc_view, lhsT_blocks[k][m], rhs_blocks[k], psum_per_tile=True)
            store_grid(out[m * BM:(m + 1) * BM, n * BN:(n + 1) * BN], acc_view)
    return out


@nki.jit
def lhs_rhsT_gen_6173(lhs, rhs_T):
    """matmul_lhs_rhsT_kernel_83_61.73mfu.py (nki-autotune dev_2, generated, 61.73% MFU). Resident:
    all of lhs transposed by 256 `dma_transpose`s of 128x128, then all of rhs_T by 64 of 512x128,
    then 16x4 output tiles (m-major) with 16-deep K chains in one reused PSUM tile, then 64 stores."""
    return _resident(lhs, rhs_T, lhs_transposed=True, rhs_transposed=True, rhs_first=False)


@nki.jit
def lhsT_rhsT_gen_6057(lhs_T, rhs_T):
    """matmul_lhsT_rhsT_kernel_53_60.57mfu.py (dev_2, generated, 60.57% MFU). Resident: rhs_T
    transposed first (64 `dma_transpose`s of 512x128), then lhs_T copied as 256 128x128 tiles, then
    the m-major tile loop with one reused PSUM tile, then 64 stores."""
    return _resident(lhs_T, rhs_T, lhs_transposed=False, rhs_transposed=True, rhs_first=True)


@nki.jit
def lhs_rhs_gen_6021(lhs, rhs):
    """matmul_lhs_rhs_kernel_30_60.21mfu.py (dev_2, generated, 60.21% MFU). rhs loaded whole (64
    `dma_copy`s of 128x512), then per 256-row block of lhs: its transpose into one reused 16x2 grid
    of 128x128 tiles (32 `dma_transpose`s, each waiting for the previous block's matmuls to finish
    reading), then that block's 2x4 output tiles with one reused PSUM tile; 64 stores at the end."""
    return _resident(lhs, rhs, lhs_transposed=True, rhs_transposed=False, rhs_first=True, m_block=256)


@nki.jit
def lhsT_rhs_gen_5860(lhs_T, rhs):
    """kernel_31_58.60mfu.py (nki-autotune 0b6f309^, generated, 58.60% MFU). Resident: lhs_T copied as
    256 128x128 tiles (small 256 B-per-partition DMAs), then rhs as 64 128x512 tiles, then the m-major
    tile loop with one reused PSUM tile, then 64 stores."""
    return _resident(lhs_T, rhs, lhs_transposed=False, rhs_transposed=False, rhs_first=False)


@nki.jit
def double_matmul_gen_5473(Q, K, V):
    """double_matmul_kernel_4_54.73mfu.py (dev_2, generated, 54.73% MFU): (Q @ K^T) @ V with S = Q @ K^T
    rounded to bf16. Phase 1, per 512-column block of S: K's rows transposed (16 `dma_transpose`s of
    512x128); per 128-row tile of Q: its two 1024-wide halves transposed in turn into one reused 8-tile
    buffer, each followed by its 8 matmuls into one reused PSUM tile; S tile copied to SBUF, then four
    TensorE `nc_transpose`s (bf16 PSUM) each copied into the resident S^T grid. Phase 2, per 1024-column
    block of V: V loaded (32 `dma_copy`s of 128x512), then 2x16 output tiles with 16-deep chains in one
    reused PSUM tile. 64 stores at the end. Q is re-transposed for every S block (4x)."""
    M, D = Q.shape
    S_cols = K.shape[0]
    N = V.shape[1]
    BS, BD, BV = 512, 1024, 1024
    out = nl.ndarray((M, N), dtype=nl.bfloat16, buffer=nl.shared_hbm)
    S_T = sbuf_grid(S_cols // P, M // P, (P, P))
    Q_T = sbuf_grid(BD // P, 1, (P, P))
    K_T = sbuf_grid(D // P, 1, (P, BS))
    S = nl.ndarray((P, BS), dtype=nl.bfloat16, buffer=nl.sbuf)
    psum_S = psum_tile((P, BS))
    psum_S_T = psum_tile((P, P), dtype=nl.bfloat16)
    for s in range(S_cols // BS):
        load_grid(K_T, K[s * BS:(s + 1) * BS, 0:D], transpose=True)
        for m in range(M // P):
            nisa.memset(psum_S, 0.0)
            for d in range(D // BD):
                load_grid(Q_T, Q[m * P:(m + 1) * P, d * BD:(d + 1) * BD], transpose=True)
                k_chain(psum_S, [t for (t,) in Q_T], [t for (t,) in K_T[d * (BD // P):(d + 1) * (BD // P)]])
            nisa.tensor_copy(S, psum_S)
            for j in range(BS // P):
                nisa.nc_transpose(psum_S_T, S[0:P, j * P:(j + 1) * P])
                nisa.tensor_copy(S_T[s * (BS // P) + j][m], psum_S_T)
    acc = sbuf_grid(M // P, N // N_TILE, (P, N_TILE))
    V_block = sbuf_grid(S_cols // P, BV // N_TILE, (P, N_TILE))
    psum_out = psum_tile()
    for v in range(N // BV):
        load_grid(V_block, V[0:S_cols, v * BV:(v + 1) * BV])
        for j in range(BV // N_TILE):
            for m in range(M // P):
                psum_to_tile(acc[m][v * (BV // N_TILE) + j], psum_out,
                             [row[m] for row in S_T], [row[j] for row in V_block])
    store_grid(out, acc)
    return out

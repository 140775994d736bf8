"""Top-k (k a multiple of 8, at most 16) per row of x [N, F], values descending with their indices.

Round r takes the 8 largest (max8), locates them (nc_find_index8 on round 0, nc_match_replace8's
dst_idx afterwards) and knocks them out of a working copy with -inf for the next round.
"""

import nki
import nki.isa as nisa
import nki.language as nl


@nki.jit
def topk_kernel(x, k):
    rows, cols = x.shape
    values = nl.ndarray((rows, k), dtype=nl.float32, buffer=nl.shared_hbm)
    indices = nl.ndarray((rows, k), dtype=nl.uint32, buffer=nl.shared_hbm)
    p_tile = nl.tile_size.pmax
    for r in nl.affine_range((rows + p_tile - 1) // p_tile):
        r0 = r * p_tile
        n = min(p_tile, rows - r0)
        work = nl.ndarray((p_tile, cols), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=work[0:n, :], src=x[r0:r0 + n, :])
        top = nl.ndarray((p_tile, k), dtype=nl.float32, buffer=nl.sbuf)
        where = nl.ndarray((p_tile, k), dtype=nl.uint32, buffer=nl.sbuf)
        for rnd in nl.sequential_range(k // 8):
            vals = top[0:n, rnd * 8:(rnd + 1) * 8]
            nisa.max8(dst=vals, src=work[0:n, :])
            if rnd == 0:
                nisa.nc_find_index8(dst=where[0:n, 0:8], data=work[0:n, :], vals=vals)
            if rnd + 1 < k // 8 or rnd > 0:
                nisa.nc_match_replace8(dst=work[0:n, :], data=work[0:n, :], vals=vals, imm=float("-inf"),
                                       dst_idx=where[0:n, rnd * 8:(rnd + 1) * 8])
        nisa.dma_copy(dst=values[r0:r0 + n, :], src=top[0:n, :])
        nisa.dma_copy(dst=indices[r0:r0 + n, :], src=where[0:n, :])
    return values, indices

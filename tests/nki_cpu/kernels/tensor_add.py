"""Element-wise add of two [N, F] HBM tensors, 128 rows and up to 512 columns per tile."""

import nki
import nki.isa as nisa
import nki.language as nl


@nki.jit
def tensor_add_kernel(a, b):
    rows, cols = a.shape
    out = nl.ndarray((rows, cols), dtype=a.dtype, buffer=nl.shared_hbm)
    p_tile = nl.tile_size.pmax
    f_tile = min(cols, 512)
    for r in nl.affine_range((rows + p_tile - 1) // p_tile):
        r0 = r * p_tile
        nrows = min(p_tile, rows - r0)
        for c in nl.affine_range(cols // f_tile):
            c0 = c * f_tile
            x = nl.ndarray((p_tile, f_tile), dtype=a.dtype, buffer=nl.sbuf)
            y = nl.ndarray((p_tile, f_tile), dtype=b.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=x[0:nrows, :], src=a[r0:r0 + nrows, c0:c0 + f_tile])
            nisa.dma_copy(dst=y[0:nrows, :], src=b[r0:r0 + nrows, c0:c0 + f_tile])
            z = nl.ndarray((p_tile, f_tile), dtype=a.dtype, buffer=nl.sbuf)
            nisa.tensor_tensor(dst=z[0:nrows, :], data1=x[0:nrows, :], data2=y[0:nrows, :], op=nl.add)
            nisa.dma_copy(dst=out[r0:r0 + nrows, c0:c0 + f_tile], src=z[0:nrows, :])
    return out

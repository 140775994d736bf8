"""Row softmax of x [N, F]: exp(x - max) / sum, one 128-row tile at a time."""

import nki
import nki.isa as nisa
import nki.language as nl


@nki.jit
def softmax_kernel(x):
    rows, cols = x.shape
    out = nl.ndarray((rows, cols), dtype=x.dtype, buffer=nl.shared_hbm)
    p_tile = nl.tile_size.pmax
    for r in nl.affine_range((rows + p_tile - 1) // p_tile):
        r0 = r * p_tile
        n = min(p_tile, rows - r0)
        x_tile = nl.ndarray((p_tile, cols), dtype=x.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=x_tile[0:n, :], src=x[r0:r0 + n, :])
        neg_max = nl.ndarray((p_tile, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_reduce(dst=neg_max[0:n, :], op=nl.maximum, data=x_tile[0:n, :], axis=1, negate=True)
        exps = nl.ndarray((p_tile, cols), dtype=nl.float32, buffer=nl.sbuf)
        sums = nl.ndarray((p_tile, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=exps[0:n, :], op=nl.exp, data=x_tile[0:n, :], bias=neg_max[0:n, :],
                        reduce_op=nl.add, reduce_res=sums[0:n, :], reduce_cmd=nisa.reduce_cmd.reset_reduce)
        inv = nl.ndarray((p_tile, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.reciprocal(dst=inv[0:n, :], data=sums[0:n, :])
        y = nl.ndarray((p_tile, cols), dtype=x.dtype, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=y[0:n, :], data=exps[0:n, :], op0=nl.multiply, operand0=inv[0:n, :])
        nisa.dma_copy(dst=out[r0:r0 + n, :], src=y[0:n, :])
    return out

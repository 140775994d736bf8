"""RMSNorm over the last dim: out = x * rsqrt(mean(x^2) + eps) * weight, for x [N, H], weight [H].

The weight row is broadcast to all partitions by one DMA whose HBM access pattern has a zero
partition step. Per 128-row tile: ScalarE squares and sums (activation_reduce), VectorE finishes.
"""

import nki
import nki.isa as nisa
import nki.language as nl


@nki.jit
def rmsnorm_kernel(x, weight, eps):
    rows, hidden = x.shape
    out = nl.ndarray((rows, hidden), dtype=x.dtype, buffer=nl.shared_hbm)
    p_tile = nl.tile_size.pmax
    w_tile = nl.ndarray((p_tile, hidden), dtype=weight.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=w_tile, src=weight.ap(pattern=[[0, p_tile], [1, hidden]], offset=0))
    for r in nl.affine_range((rows + p_tile - 1) // p_tile):
        r0 = r * p_tile
        n = min(p_tile, rows - r0)
        x_tile = nl.ndarray((p_tile, hidden), dtype=x.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=x_tile[0:n, :], src=x[r0:r0 + n, :])
        squares = nl.ndarray((p_tile, hidden), dtype=nl.float32, buffer=nl.sbuf)
        sum_sq = nl.ndarray((p_tile, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation_reduce(dst=squares[0:n, :], op=nl.square, data=x_tile[0:n, :],
                               reduce_op=nl.add, reduce_res=sum_sq[0:n, :])
        rstd = nl.ndarray((p_tile, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=rstd[0:n, :], data=sum_sq[0:n, :], op0=nl.multiply, operand0=1.0 / hidden,
                           op1=nl.add, operand1=eps)
        nisa.activation(dst=rstd[0:n, :], op=nl.rsqrt, data=rstd[0:n, :])
        normed = nl.ndarray((p_tile, hidden), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=normed[0:n, :], data=x_tile[0:n, :], op0=nl.multiply, operand0=rstd[0:n, :])
        y = nl.ndarray((p_tile, hidden), dtype=x.dtype, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=y[0:n, :], data1=normed[0:n, :], data2=w_tile[0:n, :], op=nl.multiply)
        nisa.dma_copy(dst=out[r0:r0 + n, :], src=y[0:n, :])
    return out

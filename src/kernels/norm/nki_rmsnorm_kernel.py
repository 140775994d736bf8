"""NKI RMSNorm over the hidden dim, optionally fused with the residual add that precedes it.

Tokens go on partitions (128 per tile), the hidden dim along the free axis. Numerics follow NxDI's
CustomRMSNorm: the sum of squares, the mean and rsqrt in fp32 (ScalarE square with add-reduce), then the
fp32 product x * rstd, then one multiply by the weight rounded once to the output dtype. The fused add
rounds `residual + x` to the input dtype first, as the unfused model does.
"""
import nki
import nki.isa as nisa
import nki.language as nl


def _normalise_tile(hidden_tile, w_tile, out, r0, n, width, eps):
    squares = nl.ndarray((nl.tile_size.pmax, width), dtype=nl.float32, buffer=nl.sbuf)
    sum_sq = nl.ndarray((nl.tile_size.pmax, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation_reduce(dst=squares[0:n, :], op=nl.square, data=hidden_tile[0:n, :], reduce_op=nl.add,
                           reduce_res=sum_sq[0:n, :])
    rstd = nl.ndarray((nl.tile_size.pmax, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=rstd[0:n, :], data=sum_sq[0:n, :], op0=nl.multiply, operand0=1.0 / width,
                       op1=nl.add, operand1=eps)
    nisa.activation(dst=rstd[0:n, :], op=nl.rsqrt, data=rstd[0:n, :])
    scaled = nl.ndarray((nl.tile_size.pmax, width), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=scaled[0:n, :], data=hidden_tile[0:n, :], op0=nl.multiply, operand0=rstd[0:n, :])
    normed = nl.ndarray((nl.tile_size.pmax, width), dtype=out.dtype, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=normed[0:n, :], data1=scaled[0:n, :], data2=w_tile[0:n, :], op=nl.multiply)
    nisa.dma_copy(dst=out[r0:r0 + n, :], src=normed[0:n, :])


def _broadcast_weight(weight, width):
    """The weight row on every partition: one DMA whose HBM access pattern has a zero partition step."""
    w_tile = nl.ndarray((nl.tile_size.pmax, width), dtype=weight.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=w_tile, src=weight.ap(pattern=[[0, nl.tile_size.pmax], [1, width]], offset=0))
    return w_tile


def _rmsnorm_tiles(x, residual, weight, eps):
    """Per 128-token tile: load x (and add the residual), normalise, store; returns (out, hidden or None)."""
    tokens, width = x.shape
    out = nl.ndarray((tokens, width), dtype=x.dtype, buffer=nl.shared_hbm)
    hidden = None if residual is None else nl.ndarray((tokens, width), dtype=x.dtype, buffer=nl.shared_hbm)
    w_tile = _broadcast_weight(weight, width)
    for t in nl.affine_range((tokens + nl.tile_size.pmax - 1) // nl.tile_size.pmax):
        r0 = t * nl.tile_size.pmax
        n = min(nl.tile_size.pmax, tokens - r0)
        x_tile = nl.ndarray((nl.tile_size.pmax, width), dtype=x.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=x_tile[0:n, :], src=x[r0:r0 + n, :])
        if residual is not None:
            r_tile = nl.ndarray((nl.tile_size.pmax, width), dtype=x.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=r_tile[0:n, :], src=residual[r0:r0 + n, :])
            nisa.tensor_tensor(dst=x_tile[0:n, :], data1=r_tile[0:n, :], data2=x_tile[0:n, :], op=nl.add)
            nisa.dma_copy(dst=hidden[r0:r0 + n, :], src=x_tile[0:n, :])
        _normalise_tile(x_tile, w_tile, out, r0, n, width, eps)
    return out, hidden


@nki.jit
def rmsnorm(x, weight, eps):
    """x [T, H], weight [H] -> normed [T, H]."""
    return _rmsnorm_tiles(x, None, weight, eps)[0]


@nki.jit
def add_rmsnorm(x, residual, weight, eps):
    """x, residual [T, H], weight [H] -> (normed [T, H], hidden = residual + x [T, H])."""
    return _rmsnorm_tiles(x, residual, weight, eps)

"""NKI router: fp32 logits, softmax, top-k and the bf16 L1 normalisation of NxDI, tokens on partitions.

Per tile of up to 128 tokens: the fp32 logits [n, E] accumulate in PSUM over H/128 K tiles (token tile
stationary, router weight moving); h = k * 128 + p, and both operands are brought to that layout by DMA
transposes. VectorE max8 gives each token's 8 largest logits in descending order and nc_find_index8 their
expert ids (tied logits: lower id first, a deterministic rule). The softmax runs in fp32: exp(logit - max)
summed over all experts on ScalarE, then only the chosen probabilities are formed (exp of the top logits
times the reciprocal of the sum) and rounded to the model dtype, as NxDI rounds its softmax. The L1
normalisation then follows F.normalize on those bf16 values: their sum rounded to bf16, and each value
times its reciprocal rounded to bf16 (which equals the correctly rounded quotient for bf16 operands).
"""
import nki
import nki.isa as nisa
import nki.language as nl

TOP_MAX = 8  # max8 yields 8 candidates per token


def load_weight_t(weight):
    """weight [E, H] fp32 -> wT [P, H/P, E] with wT[p, k, e] = weight[e, k * P + p]."""
    experts, hidden = weight.shape
    pmax = nl.tile_size.pmax
    w_t = nl.ndarray((pmax, hidden // pmax, experts), dtype=weight.dtype, buffer=nl.sbuf)
    nisa.dma_transpose(dst=w_t, src=weight.reshape((experts, hidden // pmax, pmax)), axes=(2, 1, 0))
    return w_t


def tile_logits(x, r0, n, w_t):
    """fp32 logits [n, E] in SBUF of tokens r0 .. r0 + n."""
    _, hidden = x.shape
    pmax = nl.tile_size.pmax
    k_tiles, experts = w_t.shape[1], w_t.shape[2]
    x_t = nl.ndarray((pmax, k_tiles, n), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_transpose(dst=x_t, src=x[r0:r0 + n, :].reshape((n, k_tiles, pmax)), axes=(2, 1, 0))
    x_f32 = nl.ndarray((pmax, k_tiles, n), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=x_f32, src=x_t)
    acc = nl.ndarray((n, experts), dtype=nl.float32, buffer=nl.psum)
    for k in nl.sequential_range(k_tiles):
        nisa.nc_matmul(dst=acc, stationary=x_f32[0:pmax, k, 0:n], moving=w_t[0:pmax, k, 0:experts])
    logits = nl.ndarray((n, experts), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=logits, src=acc)
    return logits


def chosen_probabilities(logits, top, dtype):
    """softmax(logits) at the top logits, fp32, rounded to dtype: [n, 8]."""
    n, experts = logits.shape
    neg_max = nl.ndarray((n, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=neg_max, data=top[0:n, 0:1], op0=nl.multiply, operand0=-1.0)
    exps = nl.ndarray((n, experts), dtype=nl.float32, buffer=nl.sbuf)
    total = nl.ndarray((n, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation_reduce(dst=exps, op=nl.exp, data=logits, reduce_op=nl.add, reduce_res=total, bias=neg_max)
    inv_total = nl.ndarray((n, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.reciprocal(dst=inv_total, data=total)
    top_exps = nl.ndarray((n, TOP_MAX), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=top_exps, op=nl.exp, data=top, bias=neg_max)
    probs = nl.ndarray((n, TOP_MAX), dtype=dtype, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=probs, data=top_exps, op0=nl.multiply, operand0=inv_total)
    return probs


def l1_normalised(probs, top_k):
    """probs[:, :k] / their sum, with the sum and the result rounded to probs' dtype: [n, k]."""
    n = probs.shape[0]
    norm = nl.ndarray((n, 1), dtype=probs.dtype, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=norm, op=nl.add, data=probs[0:n, 0:top_k], axis=1)
    inv_norm = nl.ndarray((n, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.reciprocal(dst=inv_norm, data=norm)
    affinities = nl.ndarray((n, top_k), dtype=probs.dtype, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=affinities, data=probs[0:n, 0:top_k], op0=nl.multiply, operand0=inv_norm)
    return affinities


@nki.jit
def router_topk(x, weight, top_k, token_tile):
    """x [T, H], weight [E, H] fp32 -> (affinities [T, k] in x's dtype, expert ids [T, k] uint32)."""
    tokens, _ = x.shape
    affinities = nl.ndarray((tokens, top_k), dtype=x.dtype, buffer=nl.shared_hbm)
    index = nl.ndarray((tokens, top_k), dtype=nl.uint32, buffer=nl.shared_hbm)
    w_t = load_weight_t(weight)
    for t in nl.affine_range((tokens + token_tile - 1) // token_tile):
        r0 = t * token_tile
        n = min(token_tile, tokens - r0)
        logits = tile_logits(x, r0, n, w_t)
        top = nl.ndarray((n, TOP_MAX), dtype=nl.float32, buffer=nl.sbuf)
        nisa.max8(dst=top, src=logits)
        ids = nl.ndarray((n, TOP_MAX), dtype=nl.uint32, buffer=nl.sbuf)
        nisa.nc_find_index8(dst=ids, data=logits, vals=top)
        chosen = l1_normalised(chosen_probabilities(logits, top, x.dtype), top_k)
        nisa.dma_copy(dst=affinities[r0:r0 + n, :], src=chosen)
        nisa.dma_copy(dst=index[r0:r0 + n, :], src=ids[0:n, 0:top_k])
    return affinities, index

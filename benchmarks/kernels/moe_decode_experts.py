"""Decode-time MoE experts for one token (NKI Beta 2), with its torch reference.

Weights are laid out as NxDI does: gate_up [E, H, 2*I] (gate in [..., :I], up in [..., I:]) and
down [E, I, H]. For each of the K selected experts the kernel gathers that expert's weights by
DMA (scalar_offset on the expert dim), computes SiLU(x @ gate) * (x @ up) with the weights as
the stationary operand and the token as the moving one, projects down, scales by the expert's
affinity and accumulates the K results in fp32.

Inputs: hidden [1, H], gate_up_weights [E, H, 2I], down_weights [E, I, H] (same float dtype),
expert_index [1, K] int32, expert_affinity [1, K] float32. Output [1, H] in hidden's dtype.
H must be a multiple of 512; I is split into chunks of at most 128.
"""

import nki
import nki.isa as nisa
import nki.language as nl


@nki.jit
def moe_decode_experts_kernel(hidden, gate_up_weights, down_weights, expert_index, expert_affinity):
    _, H = hidden.shape
    E, _, I2 = gate_up_weights.shape
    I = I2 // 2
    K = expert_index.shape[1]
    P = nl.tile_size.pmax
    n_tile = nl.tile_size.gemm_moving_fmax
    HT = H // P
    out = nl.ndarray((1, H), dtype=hidden.dtype, buffer=nl.shared_hbm)

    # The token with H on partitions: x_sb[p, t] = hidden[0, t * P + p].
    x_sb = nl.ndarray((P, HT), dtype=hidden.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=x_sb, src=hidden.ap(pattern=[[1, P], [P, HT]], offset=0))
    idx_sb = nl.ndarray((1, K), dtype=expert_index.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=idx_sb, src=expert_index)
    aff_sb = nl.ndarray((1, K), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=aff_sb, src=expert_affinity)
    acc = nl.ndarray((1, H), dtype=nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=acc, value=0.0)

    chunks = [(c0, min(P, I - c0)) for c0 in range(0, I, P)]
    for k in nl.sequential_range(K):
        expert = idx_sb[0:1, k:k + 1]
        # w_sb[p, t, j] = gate_up_weights[expert, t * P + p, j]
        w_sb = nl.ndarray((P, HT, I2), dtype=gate_up_weights.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=w_sb, src=gate_up_weights.ap(pattern=[[I2, P], [P * I2, HT], [1, I2]], offset=0,
                                                       scalar_offset=expert, indirect_dim=0))
        projected = []
        for c0, size in chunks:
            gate_ps = nl.ndarray((size, 1), dtype=nl.float32, buffer=nl.psum)
            up_ps = nl.ndarray((size, 1), dtype=nl.float32, buffer=nl.psum)
            for t in nl.affine_range(HT):
                nisa.nc_matmul(dst=gate_ps, stationary=w_sb[:, t, c0:c0 + size], moving=x_sb[:, t:t + 1])
                nisa.nc_matmul(dst=up_ps, stationary=w_sb[:, t, I + c0:I + c0 + size], moving=x_sb[:, t:t + 1])
            act = nl.ndarray((size, 1), dtype=nl.float32, buffer=nl.sbuf)
            nisa.activation(dst=act, op=nl.silu, data=gate_ps)
            h_sb = nl.ndarray((size, 1), dtype=hidden.dtype, buffer=nl.sbuf)
            nisa.tensor_tensor(dst=h_sb, data1=act, data2=up_ps, op=nl.multiply)
            # d_sb[p, h] = down_weights[expert, c0 + p, h]
            d_sb = nl.ndarray((size, H), dtype=down_weights.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=d_sb, src=down_weights.ap(pattern=[[H, size], [1, H]], offset=c0 * H,
                                                        scalar_offset=expert, indirect_dim=0))
            projected.append((h_sb, d_sb))
        for n0 in nl.affine_range(0, H, n_tile):
            y_ps = nl.ndarray((1, n_tile), dtype=nl.float32, buffer=nl.psum)
            for h_sb, d_sb in projected:
                nisa.nc_matmul(dst=y_ps, stationary=h_sb, moving=d_sb[:, n0:n0 + n_tile])
            nisa.scalar_tensor_tensor(dst=acc[0:1, n0:n0 + n_tile], data=y_ps, op0=nl.multiply,
                                      operand0=aff_sb[0:1, k:k + 1], op1=nl.add, operand1=acc[0:1, n0:n0 + n_tile])

    out_sb = nl.ndarray((1, H), dtype=hidden.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=out_sb, src=acc)
    nisa.dma_copy(dst=out, src=out_sb)
    return out


def make_moe_inputs(experts, hidden, intermediate, top_k, seed=0):
    """bf16 torch inputs. Only the selected experts get random weights (the others stay zero),
    which keeps real shapes cheap to build and makes a wrong gather visible."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    selected = torch.randperm(experts, generator=gen)[:top_k]
    gate_up = torch.zeros((experts, hidden, 2 * intermediate), dtype=torch.bfloat16)
    down = torch.zeros((experts, intermediate, hidden), dtype=torch.bfloat16)
    for e in selected.tolist():
        gate_up[e] = (torch.randn((hidden, 2 * intermediate), generator=gen) / hidden ** 0.5).bfloat16()
        down[e] = (torch.randn((intermediate, hidden), generator=gen) / intermediate ** 0.5).bfloat16()
    x = torch.randn((1, hidden), generator=gen).bfloat16()
    index = selected.to(torch.int32).reshape(1, top_k)
    affinity = torch.softmax(torch.randn((1, top_k), generator=gen), dim=-1)
    return x, gate_up, down, index, affinity


def moe_decode_experts_torch_ref(hidden, gate_up_weights, down_weights, expert_index, expert_affinity):
    """The same computation in torch (fp32 math on the given weights), returned in hidden's dtype."""
    import torch

    x = hidden.float()
    intermediate = gate_up_weights.shape[2] // 2
    out = torch.zeros_like(x)
    for k, expert in enumerate(expert_index[0].tolist()):
        gate_up = x @ gate_up_weights[expert].float()
        h = torch.nn.functional.silu(gate_up[:, :intermediate]) * gate_up[:, intermediate:]
        out += expert_affinity[0, k].float() * (h @ down_weights[expert].float())
    return out.to(hidden.dtype)

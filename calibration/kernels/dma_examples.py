"""Calibration kernels: the measured examples of the Neuron SDK's DMA overview, rewritten.

aws-neuron-sdk nki/get-started/about/nki-dma-overview.rst profiles small kernels on one Trn2
NeuronCore (NeuronCore-v3) and reports what the DMA engines did. Our kernels issue the same
instruction stream as the published code (same nisa calls, shapes, dtypes and buffers, in order);
the measured figure is a per-instruction one, so the calibration compares it with the estimated
duration of the named instruction, not with the whole launch.
"""

import nki
import nki.isa as nisa
import nki.language as nl


@nki.jit
def dma_overview_example1(a):
    """Example 1, "Move A[4,4096] HBM -> SBUF" (Trn2, one NeuronCore). a: [4, 4096] bfloat16, row-major
    and contiguous in HBM. Stream: `dma_copy` HBM -> SBUF of all of `a` (4 partitions x 8 KiB = 32 KiB),
    ScalarE `activation` exp into a second SBUF tile, `dma_copy` back to a new HBM tensor. Measured: the
    load is a single 32 KiB transfer on one DMA engine (4 partitions sit within one engine's 8), taking
    1416 ns in the profile; it is instruction 0 of the trace."""
    out = nl.ndarray(a.shape, dtype=nl.bfloat16, buffer=nl.shared_hbm)
    loaded = nl.ndarray(a.shape, dtype=nl.bfloat16, buffer=nl.sbuf)
    result = nl.ndarray(a.shape, dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.dma_copy(dst=loaded, src=a[0:4, 0:4096])
    nisa.activation(dst=result, op=nl.exp, data=loaded)
    nisa.dma_copy(dst=out[0:4, 0:4096], src=result)
    return out

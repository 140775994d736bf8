"""TP collectives at batch 1: latency + size / bandwidth (hardware-and-model.md §4).

Ring algorithms (SDK neuron-runtime/explore/intranode-collective-comm.rst): an all-reduce is a
reduce-scatter plus an all-gather, 2(N-1) hops, each rank sending 2(N-1)/N of the message; an all-gather
is N-1 hops, each rank sending (N-1)/N of the gathered tensor. The bandwidth is the logical core's HBM
bandwidth (intra-chip collectives move data HBM to HBM; no figure for the collective cores' own rate is
published: an assumption). With one rank there is nothing to do.
"""
from __future__ import annotations


def ring_all_reduce_ns(message_bytes: float, ranks: int, hop_ns: float, bytes_per_ns: float) -> float:
    if ranks <= 1:
        return 0.0
    return 2 * (ranks - 1) * hop_ns + 2 * (ranks - 1) / ranks * message_bytes / bytes_per_ns


def ring_all_gather_ns(gathered_bytes: float, ranks: int, hop_ns: float, bytes_per_ns: float) -> float:
    if ranks <= 1:
        return 0.0
    return (ranks - 1) * hop_ns + (ranks - 1) / ranks * gathered_bytes / bytes_per_ns
